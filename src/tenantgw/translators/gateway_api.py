"""
Gateway API (GatewayClass, Gateway, HTTPRoute, GRPCRoute, ReferenceGrant)
into the tenant model, with the status the Gateway API spec asks for.

What this module decides, and what it leaves to the tenant policy that runs
after every translator:

- Which Gateways are ours: those of a GatewayClass whose controllerName is
  L{CONTROLLER_NAME}, optionally narrowed to the C{--gateway NS/NAME} list.
- Which listeners a route attaches to: parentRefs (sectionName, port),
  allowedRoutes (Same, All, Selector; kinds) and the hostname intersection
  of listener and route.  The attached listener hostnames become the
  route's hosts: a listener is the operator's allowance (contract section
  10), so the policy step lets a namespace claim what a listener granted it.
- Each rule, with its matches, filters, backends and timeouts, as model
  L{Route}s.  A route whose spec we cannot serve as written (a regular
  expression match, an unknown filter) is refused whole with C{Accepted:
  False, UnsupportedValue} and the field path, never served half-way.
  A backend we may not or cannot use (no ReferenceGrant, no such Service,
  not a Service) keeps its weight as a share answered 500, as the spec
  requires, with C{ResolvedRefs: False} naming the reason.
- A GRPCRoute is the same machinery with gRPC's own matches: a method
  match becomes a match on the C{/service/method} path (an exact path, a
  prefix, or an RE2 expression matched whole), header matches may be RE2
  expressions, and every backend is spoken to over h2c whatever its
  Service port says (gRPC is HTTP/2).

Host ownership across dialects, ceilings and the tenant-wide access and
quota are not decided here: the same rules apply to every dialect.
"""

from __future__ import annotations

import functools
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import re2
from attrs import evolve, frozen

from tenantgw.compile.selector import LabelSelector, SelectorError
from tenantgw.config import names
from tenantgw.config.checker import Checker, Section, or_default
from tenantgw.config.model import (
    PATH_EXACT,
    PATH_PREFIX,
    PATH_REGEX,
    BackendRef,
    Cors,
    HeaderMatch,
    HeaderModifier,
    Mirror,
    QueryParamMatch,
    Redirect,
    Rewrite,
    Route,
    RouteMatch,
)
from tenantgw.plans.snapshot import ANY_HOST
from tenantgw.translators.conditions import (
    FALSE,
    TRUE,
    Condition,
    ObjectKey,
    condition,
    generation_of,
)
from tenantgw.translators.durations import parse_duration
from tenantgw.translators.objects import (
    KubeObject,
    age_key,
    labels_of,
    name_of,
    namespace_of,
    spec,
)

CONTROLLER_NAME = "tenantgw.io/gateway-controller"
# The kinds this dialect reads (ReferenceGrant also as v1beta1).
GATEWAY_API_KINDS = ("GatewayClass", "Gateway", "HTTPRoute", "GRPCRoute", "ReferenceGrant")
# The route kinds an HTTP or HTTPS listener serves (its supportedKinds).
ROUTE_KINDS = ("HTTPRoute", "GRPCRoute")
GROUP = "gateway.networking.k8s.io"

HTTP = "HTTP"
HTTPS = "HTTPS"
_SCHEME_OF = {HTTP: "http", HTTPS: "https"}
_DEFAULT_PORT = {"http": 80, "https": 443}

# The CRD's own bounds (gateway.networking.k8s.io v1.x), enforced again here
# because a dir: source has no API server to enforce them.
MAX_HOSTNAMES = 16
MAX_RULES = 16
MAX_MATCHES = 64
MAX_FILTERS = 16
MAX_BACKENDS = 16
MAX_PARENTS = 32
MAX_MATCH_CONDITIONS = 16
MAX_HEADER_EDITS = 16
MAX_WEIGHT = 1_000_000
MAX_TIMEOUT_SECONDS = 3600.0
MAX_CORS_ENTRIES = 64

# Reasons, as the spec spells them.
ACCEPTED = "Accepted"
RESOLVED_REFS = "ResolvedRefs"
PROGRAMMED = "Programmed"
CONFLICTED = "Conflicted"
NOT_ALLOWED_BY_LISTENERS = "NotAllowedByListeners"
NO_MATCHING_LISTENER_HOSTNAME = "NoMatchingListenerHostname"
NO_MATCHING_PARENT = "NoMatchingParent"
UNSUPPORTED_VALUE = "UnsupportedValue"
UNSUPPORTED_PROTOCOL = "UnsupportedProtocol"
UNSUPPORTED_ADDRESS = "UnsupportedAddress"
REF_NOT_PERMITTED = "RefNotPermitted"
INVALID_KIND = "InvalidKind"
BACKEND_NOT_FOUND = "BackendNotFound"
INVALID_CERTIFICATE_REF = "InvalidCertificateRef"
INVALID_ROUTE_KINDS = "InvalidRouteKinds"
HOSTNAME_CONFLICT = "HostnameConflict"
# Ours (contract section 13): an older object of another namespace has the host.
HOST_CONFLICT = "HostConflict"
NO_CONFLICTS = "NoConflicts"
INVALID = "Invalid"
INCOMPATIBLE_FILTERS = "IncompatibleFilters"

RULE_FIELDS = ("name", "matches", "filters", "backendRefs", "timeouts", "sessionPersistence")
MATCH_FIELDS = ("path", "headers", "queryParams", "method")
PATH_FIELDS = ("type", "value")
NAME_VALUE_FIELDS = ("type", "name", "value")
FILTER_FIELDS = (
    "type",
    "requestHeaderModifier",
    "responseHeaderModifier",
    "requestRedirect",
    "urlRewrite",
    "requestMirror",
    "cors",
    "extensionRef",
)
HEADER_FILTER_FIELDS = ("set", "add", "remove")
HEADER_VALUE_FIELDS = ("name", "value")
REDIRECT_FIELDS = ("scheme", "hostname", "path", "port", "statusCode")
PATH_MODIFIER_FIELDS = ("type", "replaceFullPath", "replacePrefixMatch")
REWRITE_FIELDS = ("hostname", "path")
MIRROR_FIELDS = ("backendRef", "percent", "fraction")
FRACTION_FIELDS = ("numerator", "denominator")
CORS_FIELDS = (
    "allowOrigins",
    "allowMethods",
    "allowHeaders",
    "exposeHeaders",
    "allowCredentials",
    "maxAge",
)
BACKEND_FIELDS = ("group", "kind", "name", "namespace", "port", "weight", "filters")
TIMEOUT_FIELDS = ("request", "backendRequest")
# 301 and 302 are the spec's core; 303, 307 and 308 are what tenant.yaml
# already allows, so a migration can keep its status codes.
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")


@frozen
class GatewayApiOptions:
    controller_name: str = CONTROLLER_NAME
    # --gateway NS/NAME (repeatable); None serves every Gateway of our classes.
    gateways: frozenset[tuple[str, str]] | None = None


@frozen
class Listener:
    """An accepted listener: what the HTTP or HTTPS socket serves for it."""

    gateway: ObjectKey
    name: str
    protocol: str
    port: int
    hostname: str | None
    # (namespace, name) of permitted certificate Secrets (HTTPS only); the
    # compile step reads them by name and reports InvalidCertificateRef.
    certificate_refs: tuple[tuple[str, str], ...] = ()


@frozen
class TranslatedRoute:
    """
    One rule-match of an HTTPRoute or GRPCRoute as served on one group of
    listeners.

    C{hosts} are the effective hostnames (listener x route intersection),
    C{ANY_HOST} when neither restricts them.  C{order} breaks ties the way
    the spec does once match specificity is equal: oldest route, then
    namespace/name, then rule order.
    """

    namespace: str
    origin: ObjectKey
    hosts: tuple[str, ...]
    scheme: str
    route: Route
    order: tuple[str, str, str, int]
    source: str = ""  # "HTTPRoute web spec.rules[0]": where messages point


@frozen
class ParentStatus:
    gateway: ObjectKey
    section_name: str | None
    port: int | None
    conditions: tuple[Condition, ...]


@frozen
class ListenerStatus:
    name: str
    attached_routes: int
    supported_kinds: tuple[str, ...]
    conditions: tuple[Condition, ...]


@frozen
class ObjectStatus:
    key: ObjectKey
    conditions: tuple[Condition, ...] = ()
    parents: tuple[ParentStatus, ...] = ()
    listeners: tuple[ListenerStatus, ...] = ()

    def failing(self) -> Condition | None:
        """
        The first condition in a bad state, the object's own first, then its
        parents' and listeners': what an operator needs to read first.
        C{Conflicted} reads the other way round: True is the bad state.
        """
        conditions = [
            *self.conditions,
            *(c for p in self.parents for c in p.conditions),
            *(c for lst in self.listeners for c in lst.conditions),
        ]
        return next((c for c in conditions if (c.type == "Conflicted") == c.ok), None)

    def summary(self, with_message: bool = False) -> str:
        """
        "Accepted", or the first failing condition as "Type Status (Reason)"
        (and ": message" when asked): what check, Events and the dashboard say.
        """
        failing = self.failing()
        if failing is None:
            return "Accepted"
        text = f"{failing.type} {failing.status} ({failing.reason})"
        if with_message and failing.message:
            text += f": {failing.message}"
        return text


@frozen
class GatewayApiTranslation:
    listeners: tuple[Listener, ...]
    routes: tuple[TranslatedRoute, ...]
    statuses: tuple[ObjectStatus, ...]

    def status_of(self, kind: str, namespace: str, name: str) -> ObjectStatus | None:
        key = ObjectKey(kind, namespace, name)
        return next((s for s in self.statuses if s.key == key), None)


# --- hostnames ---------------------------------------------------------------


def _covers(wildcard: str, host: str) -> bool:
    """C{*.a.b} covers one or more labels in front of C{a.b} (C{host} may be a wildcard)."""
    suffix = wildcard[1:]
    return host.endswith(suffix) and len(host) > len(suffix)


def intersect_hostnames(listener: str | None, route: Sequence[str]) -> tuple[str, ...]:
    """
    The hostnames a route serves on a listener (Gateway API's intersection
    rules); empty when they share none, C{(ANY_HOST,)} when neither
    restricts.
    """
    if not route:
        return (listener,) if listener else (ANY_HOST,)
    if not listener:
        return tuple(route)
    result: list[str] = []
    for host in route:
        if host == listener or (listener.startswith("*.") and _covers(listener, host)):
            candidate = host
        elif host.startswith("*.") and _covers(host, listener):
            candidate = listener
        else:
            continue
        if candidate not in result:
            result.append(candidate)
    return tuple(result)


# --- ReferenceGrant ----------------------------------------------------------


class _Grants:
    """ReferenceGrants by the namespace they grant access into."""

    def __init__(self, grants: Iterable[KubeObject]) -> None:
        self._by_namespace: dict[str, list[KubeObject]] = defaultdict(list)
        for grant in grants:
            self._by_namespace[namespace_of(grant)].append(grant)

    def permits(
        self,
        from_kind: str,
        from_namespace: str,
        to_group: str,
        to_kind: str,
        to_namespace: str,
        to_name: str,
    ) -> bool:
        if from_namespace == to_namespace:
            return True
        for grant in self._by_namespace.get(to_namespace, ()):
            body = spec(grant)
            froms = body.get("from") or []
            tos = body.get("to") or []
            if not isinstance(froms, list) or not isinstance(tos, list):
                continue
            from_ok = any(
                isinstance(f, Mapping)
                and f.get("group") == GROUP
                and f.get("kind") == from_kind
                and f.get("namespace") == from_namespace
                for f in froms
            )
            to_ok = any(
                isinstance(t, Mapping)
                and (t.get("group") or "") == to_group
                and t.get("kind") == to_kind
                and (not t.get("name") or t.get("name") == to_name)
                for t in tos
            )
            if from_ok and to_ok:
                return True
        return False


# --- Gateways and listeners ----------------------------------------------------


@frozen
class _ListenerDraft:
    listener: Listener
    allowed_namespaces: str  # Same | All | Selector
    selector: LabelSelector | None
    kinds: frozenset[str]  # the route kinds it admits (allowedRoutes.kinds)
    usable: bool  # Accepted, refs resolved, not conflicted: served


def _our_classes(classes: Iterable[KubeObject], controller: str) -> list[KubeObject]:
    return [c for c in classes if spec(c).get("controllerName") == controller]


def _class_status(gateway_class: KubeObject) -> ObjectStatus:
    generation = generation_of(gateway_class)
    return ObjectStatus(
        ObjectKey("GatewayClass", "", name_of(gateway_class)),
        (condition(ACCEPTED, True, ACCEPTED, "handled by tenantgw", generation=generation),),
    )


def _translate_gateway(
    gateway: KubeObject, grants: _Grants
) -> tuple[list[_ListenerDraft], list[Condition], dict[str, list[Condition]], dict[str, list[str]]]:
    namespace, generation = namespace_of(gateway), generation_of(gateway)
    key = ObjectKey("Gateway", namespace, name_of(gateway))
    body = spec(gateway)
    drafts: list[_ListenerDraft] = []
    listener_conditions: dict[str, list[Condition]] = {}
    listener_kinds: dict[str, list[str]] = {}
    raw_listeners = body.get("listeners") or []
    if not isinstance(raw_listeners, list):
        raw_listeners = []

    seen_hostnames: dict[tuple[str, str | None], list[str]] = defaultdict(list)
    for raw in raw_listeners:
        if not isinstance(raw, Mapping):
            continue
        name = str(raw.get("name") or "")
        hostname = raw.get("hostname") or None
        protocol = raw.get("protocol")
        if protocol in (HTTP, HTTPS) and (hostname is None or isinstance(hostname, str)):
            seen_hostnames[(str(protocol), hostname)].append(name)

    for raw in raw_listeners:
        if not isinstance(raw, Mapping):
            continue
        name = str(raw.get("name") or "")
        conditions: list[Condition] = []
        protocol = raw.get("protocol")
        raw_port = raw.get("port")
        port = raw_port if isinstance(raw_port, int) else 0
        hostname = raw.get("hostname") or None
        accepted = True
        if protocol not in (HTTP, HTTPS):
            accepted = False
            conditions.append(
                condition(
                    ACCEPTED,
                    False,
                    UNSUPPORTED_PROTOCOL,
                    f"protocol {protocol!r} is not served; tenantgw serves HTTP and HTTPS",
                    generation=generation,
                )
            )
        if hostname is not None:
            try:
                hostname = names.validate_hostname(str(hostname), allow_wildcard=True)
            except ValueError as exc:
                accepted = False
                hostname = None
                conditions.append(
                    condition(
                        ACCEPTED,
                        False,
                        UNSUPPORTED_VALUE,
                        f"hostname: {exc}",
                        generation=generation,
                    )
                )
        if accepted:
            conditions.append(condition(ACCEPTED, True, ACCEPTED, generation=generation))

        # Route kinds: HTTPRoute and GRPCRoute (HTTP/2 on either protocol:
        # h2c with prior knowledge on HTTP, ALPN h2 on HTTPS).
        supported = list(ROUTE_KINDS)
        allowed = _mapping(raw.get("allowedRoutes"))
        asked = allowed.get("kinds")
        refs_ok, refs_reason, refs_message = True, RESOLVED_REFS, ""
        if isinstance(asked, list) and asked:
            wanted = [
                str(k.get("kind"))
                for k in asked
                if isinstance(k, Mapping)
                and (k.get("group") or GROUP) == GROUP
                and k.get("kind") in ROUTE_KINDS
            ]
            supported = [k for k in ROUTE_KINDS if k in wanted]
            if len(wanted) != len(asked):
                refs_ok, refs_reason = False, INVALID_ROUTE_KINDS
                refs_message = (
                    "only HTTPRoute and GRPCRoute can attach to an HTTP or HTTPS listener"
                )

        certificates: list[tuple[str, str]] = []
        if protocol == HTTPS:
            tls = _mapping(raw.get("tls"))
            mode = tls.get("mode") or "Terminate"
            refs = tls.get("certificateRefs") or []
            if mode != "Terminate":
                refs_ok, refs_reason = False, UNSUPPORTED_VALUE
                refs_message = f"tls.mode {mode!r}: an HTTPS listener terminates TLS"
            elif not isinstance(refs, list) or not refs:
                refs_ok, refs_reason = False, INVALID_CERTIFICATE_REF
                refs_message = "an HTTPS listener needs tls.certificateRefs"
            else:
                for index, ref in enumerate(refs):
                    if not isinstance(ref, Mapping):
                        continue
                    ref_ns = str(ref.get("namespace") or namespace)
                    ref_name = str(ref.get("name") or "")
                    if (ref.get("group") or "") != "" or (ref.get("kind") or "Secret") != "Secret":
                        refs_ok, refs_reason = False, INVALID_CERTIFICATE_REF
                        refs_message = f"tls.certificateRefs[{index}] must name a Secret"
                    elif not grants.permits("Gateway", namespace, "", "Secret", ref_ns, ref_name):
                        refs_ok, refs_reason = False, REF_NOT_PERMITTED
                        refs_message = (
                            f"tls.certificateRefs[{index}]: Secret {ref_ns}/{ref_name} is in "
                            "another namespace and no ReferenceGrant there permits it"
                        )
                    else:
                        certificates.append((ref_ns, ref_name))
        conditions.append(
            condition(RESOLVED_REFS, refs_ok, refs_reason, refs_message, generation=generation)
        )

        conflicted = (
            protocol in (HTTP, HTTPS) and len(seen_hostnames[(str(protocol), hostname)]) > 1
        )
        # Conflicted reads the other way round: True is the bad state.
        conditions.append(
            Condition(
                CONFLICTED,
                TRUE if conflicted else FALSE,
                HOSTNAME_CONFLICT if conflicted else NO_CONFLICTS,
                "another listener of this Gateway has the same protocol and hostname"
                if conflicted
                else "",
                generation,
            )
        )
        usable = accepted and refs_ok and not conflicted
        conditions.append(
            condition(
                PROGRAMMED,
                usable,
                PROGRAMMED if usable else INVALID,
                "" if usable else "the listener is not served; see its other conditions",
                generation=generation,
            )
        )
        namespaces = _mapping(allowed.get("namespaces"))
        allowed_from = str(namespaces.get("from") or "Same")
        selector: LabelSelector | None = None
        if allowed_from == "Selector":
            try:
                selector = LabelSelector.from_object(namespaces.get("selector") or {})
            except SelectorError:
                selector = None  # matches nothing: fail closed
        listener_conditions[name] = conditions
        listener_kinds[name] = supported
        drafts.append(
            _ListenerDraft(
                Listener(
                    key,
                    name,
                    str(protocol),
                    port,
                    hostname,
                    tuple(certificates),
                ),
                allowed_from,
                selector,
                frozenset(supported),
                usable,
            )
        )

    addresses = body.get("addresses")
    gateway_conditions: list[Condition]
    if addresses:
        gateway_conditions = [
            condition(
                ACCEPTED,
                False,
                UNSUPPORTED_ADDRESS,
                "spec.addresses is not supported: the gateway's address is its Service's",
                generation=generation,
            ),
            condition(PROGRAMMED, False, INVALID, generation=generation),
        ]
        drafts = [evolve(d, usable=False) for d in drafts]
    else:
        gateway_conditions = [
            condition(ACCEPTED, True, ACCEPTED, generation=generation),
            condition(
                PROGRAMMED,
                any(d.usable for d in drafts),
                PROGRAMMED if any(d.usable for d in drafts) else INVALID,
                "" if any(d.usable for d in drafts) else "no listener can be served",
                generation=generation,
            ),
        ]
    return drafts, gateway_conditions, listener_conditions, listener_kinds


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _admits(
    draft: _ListenerDraft, kind: str, gateway_namespace: str, route_namespace: str, labels: Any
) -> bool:
    if kind not in draft.kinds:
        return False
    if draft.allowed_namespaces == "All":
        return True
    if draft.allowed_namespaces == "Same":
        return route_namespace == gateway_namespace
    if draft.allowed_namespaces == "Selector":
        return draft.selector is not None and draft.selector.matches(labels or {})
    return False


# --- rules -------------------------------------------------------------------


@frozen
class _Backend:
    ref: BackendRef
    refused: str | None  # a reason the spec alone gives (InvalidKind), or None
    message: str = ""
    target_namespace: str = ""
    path: str = ""


@frozen
class _MirrorDraft:
    backend: _Backend
    percent: float


@frozen
class ParsedRoute:
    """
    What an HTTPRoute's spec says, before its references are checked: the
    same for the same spec, so it is computed once per distinct spec.
    """

    hostnames: tuple[str, ...]
    rules: tuple[_Rule, ...]
    problems: tuple[str, ...]  # field errors and refused features: the route is refused


@functools.lru_cache(maxsize=65536)
def _parse_cached(kind: str, namespace: str, spec_json: str) -> ParsedRoute:
    return _parse_route(kind, namespace, json.loads(spec_json))


def parse_route(route: KubeObject, kind: str | None = None) -> ParsedRoute:
    """
    An HTTPRoute's or GRPCRoute's spec, parsed; cached by its content, since
    a rebuild after one event sees every other route unchanged (5,000
    routes: 3 s -> 0.2 s).
    """
    kind = kind or ("GRPCRoute" if route.get("kind") == "GRPCRoute" else "HTTPRoute")
    try:
        spec_json = json.dumps(route.get("spec") or {}, sort_keys=True)
    except (TypeError, ValueError):  # a hand-written manifest with a date or such
        return _parse_route(kind, namespace_of(route), route.get("spec") or {})
    return _parse_cached(kind, namespace_of(route), spec_json)


def _parse_route(kind: str, namespace: str, raw_spec: object) -> ParsedRoute:
    translator_class = _GrpcRouteTranslator if kind == "GRPCRoute" else _RouteTranslator
    translator = translator_class(namespace, raw_spec)
    hostnames = translator.hostnames()
    rules = translator.rules()
    for rule in rules:
        broken = rule.prefix_rule_broken()
        if broken:
            translator.refuse(broken, "ReplacePrefixMatch requires PathPrefix matches")
    problems = [str(e) for e in translator.checker.errors] + translator.unsupported
    return ParsedRoute(hostnames, tuple(rules), tuple(problems))


class _RouteTranslator:
    """One HTTPRoute's spec; collects field errors and refused features."""

    rule_fields: tuple[str, ...] = RULE_FIELDS
    match_all = RouteMatch()  # a rule without matches

    def __init__(self, namespace: str, raw_spec: object) -> None:
        self.namespace = namespace
        self.checker = Checker()
        self.unsupported: list[str] = []  # field paths of features we refuse
        self.section = self.checker.mapping(raw_spec or {}, "spec", _SPEC_FIELDS)

    def hostnames(self) -> tuple[str, ...]:
        section = self.section
        if section is None:
            return ()
        result: list[str] = []
        for path, raw in section.items("hostnames", MAX_HOSTNAMES):
            host = self.checker.string(
                raw, path, lambda h: names.validate_hostname(h, allow_wildcard=True)
            )
            if host is not None and host not in result:
                result.append(host)
        return tuple(result)

    def rules(self) -> list[_Rule]:
        section = self.section
        if section is None:
            return []
        raw_rules = section.items("rules", MAX_RULES)
        if not section.has("rules"):
            # The spec's default: one rule matching every request, no backends.
            raw_rules = [("spec.rules[0]", {})]
        result = []
        for index, (path, raw) in enumerate(raw_rules):
            rule = self.checker.mapping(raw, path, self.rule_fields)
            if rule is not None:
                result.append(self._rule(rule, index))
        return result

    def refuse(self, path: str, message: str) -> None:
        self.unsupported.append(f"{path}: {message}")

    def _rule(self, rule: Section, index: int) -> _Rule:
        name = rule.string("name", names.validate_dns1123_label)
        if rule.has("sessionPersistence"):
            self.refuse(rule.at("sessionPersistence"), "not supported")
        matches = [self._match(m, p) for p, m in rule.items("matches", MAX_MATCHES)]
        if not rule.has("matches"):
            matches = [self.match_all]
        filters = [self._filter(f, p) for p, f in rule.items("filters", MAX_FILTERS)]
        kinds = [f[0] for f in filters if f is not None]
        if "RequestRedirect" in kinds and "URLRewrite" in kinds:
            self.refuse(rule.at("filters"), "RequestRedirect and URLRewrite exclude each other")
        for kind in (
            "RequestHeaderModifier",
            "ResponseHeaderModifier",
            "RequestRedirect",
            "URLRewrite",
            "CORS",
        ):
            if kinds.count(kind) > 1:
                self.refuse(rule.at("filters"), f"{kind} may appear only once")
        backends = [self._backend(b, p) for p, b in rule.items("backendRefs", MAX_BACKENDS)]
        timeouts = rule.section("timeouts", TIMEOUT_FIELDS)
        request_timeout = backend_timeout = None
        if timeouts is not None:
            request_timeout = self._duration(timeouts, "request")
            backend_timeout = self._duration(timeouts, "backendRequest")
            if request_timeout and backend_timeout and backend_timeout > request_timeout:
                self.checker.fail(
                    timeouts.at("backendRequest"), "must not be longer than timeouts.request"
                )
        return _Rule(
            name=name or f"rule-{index}",
            index=index,
            matches=tuple(m for m in matches if m is not None),
            filters=tuple(f for f in filters if f is not None),
            backends=tuple(b for b in backends if b is not None),
            request_timeout=request_timeout or None,
            backend_timeout=backend_timeout or None,
            has_backend_refs=rule.has("backendRefs"),
        )

    def _duration(self, section: Section, key: str) -> float | None:
        text = section.string(key)
        if text is None:
            return None
        try:
            seconds = parse_duration(text)
        except ValueError as exc:
            self.checker.fail(section.at(key), str(exc))
            return None
        if seconds > MAX_TIMEOUT_SECONDS:
            self.checker.fail(section.at(key), f"must be at most {MAX_TIMEOUT_SECONDS:g}s")
            return None
        return seconds  # 0 means "no timeout", as the spec says

    def _match(self, raw: object, path: str) -> RouteMatch | None:
        c = self.checker
        section = c.mapping(raw, path, MATCH_FIELDS)
        if section is None:
            return None
        path_type, value = PATH_PREFIX, "/"
        path_section = section.section("path", PATH_FIELDS)
        if path_section is not None:
            kind = path_section.string("type") or "PathPrefix"
            if kind == "RegularExpression":
                self.refuse(
                    path_section.at("type"),
                    "RegularExpression path matches are not supported; use Exact or PathPrefix",
                )
            elif kind not in ("Exact", "PathPrefix"):
                c.fail(path_section.at("type"), f"must be Exact or PathPrefix, got {kind!r}")
            path_type = PATH_EXACT if kind == "Exact" else PATH_PREFIX
            value = or_default(path_section.string("value", names.validate_path), "/")
        headers = [
            HeaderMatch(n.lower(), v)
            for n, v in self._name_values(
                section, "headers", names.validate_header_name, names.validate_header_value
            )
        ]
        query = [
            QueryParamMatch(n, v)
            for n, v in self._name_values(
                section, "queryParams", names.validate_query_name, names.validate_query_value
            )
        ]
        method = section.choice("method", _METHODS)
        return RouteMatch(
            path=value,
            path_type=path_type,
            methods=(method,) if method else (),
            headers=tuple(headers),
            query_params=tuple(query),
        )

    def _name_values(
        self, section: Section, key: str, check_name: Any, check_value: Any
    ) -> list[tuple[str, str]]:
        c = self.checker
        result: list[tuple[str, str]] = []
        seen: set[str] = set()
        for path, raw in section.items(key, MAX_MATCH_CONDITIONS):
            item = c.mapping(raw, path, NAME_VALUE_FIELDS)
            if item is None:
                continue
            kind = item.string("type") or "Exact"
            if kind == "RegularExpression":
                self.refuse(
                    item.at("type"), "RegularExpression matches are not supported; use Exact"
                )
                continue
            if kind != "Exact":
                c.fail(item.at("type"), f"must be Exact, got {kind!r}")
                continue
            name = item.string("name", check_name, required=True)
            value = item.string("value", check_value, required=True)
            if name is None or value is None:
                continue
            folded = name.lower() if key == "headers" else name
            if folded in seen:
                # The spec: the first entry wins; later ones are ignored.
                continue
            seen.add(folded)
            result.append((name, value))
        return result

    def _filter(self, raw: object, path: str) -> tuple[str, Any] | None:
        c = self.checker
        section = c.mapping(raw, path, FILTER_FIELDS)
        if section is None:
            return None
        kind = section.string("type", required=True)
        if kind == "RequestHeaderModifier" or kind == "ResponseHeaderModifier":
            key = (
                "requestHeaderModifier"
                if kind == "RequestHeaderModifier"
                else "responseHeaderModifier"
            )
            body = section.section(key, HEADER_FILTER_FIELDS)
            return (kind, self._header_modifier(body) if body else HeaderModifier())
        if kind == "RequestRedirect":
            body = section.section("requestRedirect", REDIRECT_FIELDS)
            return (kind, self._redirect(body) if body else _RedirectDraft())
        if kind == "URLRewrite":
            body = section.section("urlRewrite", REWRITE_FIELDS)
            return (kind, self._rewrite(body) if body else _RewriteDraft())
        if kind == "RequestMirror":
            body = section.section("requestMirror", MIRROR_FIELDS)
            return (kind, self._mirror(body)) if body else None
        if kind == "CORS":
            body = section.section("cors", CORS_FIELDS)
            return (kind, self._cors(body) if body else Cors())
        if kind is not None:
            self.refuse(section.at("type"), f"filter {kind!r} is not supported")
        return None

    def _header_modifier(self, section: Section) -> HeaderModifier:
        c = self.checker

        def values(key: str) -> tuple[tuple[str, str], ...]:
            result: list[tuple[str, str]] = []
            for path, raw in section.items(key, MAX_HEADER_EDITS):
                item = c.mapping(raw, path, HEADER_VALUE_FIELDS)
                if item is None:
                    continue
                name = item.string("name", names.validate_modifiable_header, required=True)
                value = item.string("value", names.validate_header_value, required=True)
                if name is not None and value is not None:
                    if any(existing == name for existing, _ in result):
                        c.fail(path, f"duplicate header {name!r}")
                        continue
                    result.append((name, value))
            return tuple(result)

        removed: list[str] = []
        for path, raw in section.items("remove", MAX_HEADER_EDITS):
            name = c.string(raw, path, names.validate_modifiable_header)
            if name is not None and name not in removed:
                removed.append(name)
        return HeaderModifier(set=values("set"), add=values("add"), remove=tuple(removed))

    def _path_modifier(self, section: Section | None) -> tuple[str | None, str | None]:
        """(full path, prefix replacement)."""
        if section is None:
            return None, None
        kind = section.choice("type", ("ReplaceFullPath", "ReplacePrefixMatch"))
        if kind == "ReplaceFullPath":
            return section.string("replaceFullPath", names.validate_path, required=True), None
        if kind == "ReplacePrefixMatch":
            return None, section.string("replacePrefixMatch", names.validate_path, required=True)
        if not section.has("type"):
            section.missing("type")
        return None, None

    def _redirect(self, section: Section) -> _RedirectDraft:
        status = section.integer("statusCode", 100, 599)
        if status is not None and status not in REDIRECT_STATUSES:
            self.checker.fail(
                section.at("statusCode"), f"must be one of {', '.join(map(str, REDIRECT_STATUSES))}"
            )
        full, prefix = self._path_modifier(section.section("path", PATH_MODIFIER_FIELDS))
        return _RedirectDraft(
            scheme=section.string("scheme", names.validate_scheme),
            hostname=section.string(
                "hostname", lambda h: names.validate_hostname(h, allow_wildcard=False)
            ),
            port=section.integer("port", 1, 65535),
            full_path=full,
            prefix=prefix,
            status=or_default(status, 302),
            path=section.at("path"),
        )

    def _rewrite(self, section: Section) -> _RewriteDraft:
        full, prefix = self._path_modifier(section.section("path", PATH_MODIFIER_FIELDS))
        return _RewriteDraft(
            hostname=section.string(
                "hostname", lambda h: names.validate_hostname(h, allow_wildcard=False)
            ),
            full_path=full,
            prefix=prefix,
            path=section.at("path"),
        )

    def _mirror(self, section: Section) -> _MirrorDraft | None:
        backend_section = section.raw("backendRef")
        if backend_section is None:
            section.missing("backendRef")
            return None
        backend = self._backend(backend_section, section.at("backendRef"), weighted=False)
        percent = float(or_default(section.integer("percent", 0, 100), 100))
        fraction = section.section("fraction", FRACTION_FIELDS)
        if fraction is not None:
            numerator = fraction.integer("numerator", 0, 1_000_000)
            denominator = or_default(fraction.integer("denominator", 1, 1_000_000), 100)
            if numerator is not None and numerator > denominator:
                self.checker.fail(fraction.path, "numerator must not exceed denominator")
            elif numerator is not None:
                percent = 100.0 * numerator / denominator
        return _MirrorDraft(backend, percent) if backend is not None else None

    def _cors(self, section: Section) -> Cors:
        c = self.checker

        def strings(key: str, check: Any) -> tuple[str, ...]:
            result = []
            for path, raw in section.items(key, MAX_CORS_ENTRIES):
                value = c.string(raw, path, check)
                if value is not None and value not in result:
                    result.append(value)
            return tuple(result)

        return Cors(
            allow_origins=strings("allowOrigins", _validate_origin),
            allow_methods=strings("allowMethods", _validate_cors_method),
            allow_headers=strings("allowHeaders", _validate_cors_header),
            expose_headers=strings("exposeHeaders", _validate_cors_header),
            allow_credentials=or_default(section.boolean("allowCredentials"), False),
            max_age_seconds=or_default(section.integer("maxAge", 0, 86400 * 7), 5),
        )

    def _backend(self, raw: object, path: str, *, weighted: bool = True) -> _Backend | None:
        c = self.checker
        section = c.mapping(raw, path, BACKEND_FIELDS)
        if section is None:
            return None
        group = section.string("group") or ""
        kind = section.string("kind") or "Service"
        name = section.string("name", required=True) or ""
        target_ns = section.string("namespace") or self.namespace
        port = section.integer("port", 1, 65535)
        weight = or_default(section.integer("weight", 0, MAX_WEIGHT), 1) if weighted else 1
        if section.has("filters"):
            self.refuse(
                section.at("filters"),
                "filters on a backendRef are not supported; put them on the rule",
            )
        ref = BackendRef(
            service=name,
            port=or_default(port, 0),
            weight=weight,
            namespace=None if target_ns == self.namespace else target_ns,
        )
        refused: str | None = None
        message = ""
        if group != "" or kind != "Service":
            refused, message = INVALID_KIND, f"{path}: {group}/{kind} is not a Service"
        elif port is None:
            refused, message = UNSUPPORTED_VALUE, f"{path}.port: required for a Service"
        return _Backend(ref, refused, message, target_ns, path)


GRPC_RULE_FIELDS = ("name", "matches", "filters", "backendRefs", "sessionPersistence")
GRPC_MATCH_FIELDS = ("method", "headers")
GRPC_METHOD_FIELDS = ("type", "service", "method")
GRPC_FILTER_FIELDS = (
    "type",
    "requestHeaderModifier",
    "responseHeaderModifier",
    "requestMirror",
    "extensionRef",
)
GRPC_FILTERS = ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "ExtensionRef")
# The spec's filters we refuse on a GRPCRoute, and why.
_GRPC_REFUSED_FILTERS = {
    # tenantgw.dataplane.mirror copies only requests without a body; every
    # gRPC call has one, so the filter would be accepted and do nothing.
    "RequestMirror": "RequestMirror is not supported on a GRPCRoute: only requests"
    " without a body are mirrored and every gRPC call has one",
}
MAX_GRPC_NAME = 1024  # the CRD's bound on service and method
# The CRD's patterns for an Exact service and method.
_GRPC_SERVICE = re.compile(r"\.?[A-Za-z_][A-Za-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)*\Z")
_GRPC_METHOD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*\Z")
# Any one path segment: what an absent service or method matches.
_ANY_SEGMENT = "[^/]+"


def _validate_grpc_service(text: str) -> str:
    if len(text) > MAX_GRPC_NAME or not _GRPC_SERVICE.match(text):
        raise ValueError("must be a gRPC service name like 'pkg.v1.Service'")
    return text


def _validate_grpc_method(text: str) -> str:
    if len(text) > MAX_GRPC_NAME or not _GRPC_METHOD.match(text):
        raise ValueError("must be a gRPC method name like 'GetThing'")
    return text


def _validate_re2(text: str) -> str:
    if len(text) > MAX_GRPC_NAME:
        raise ValueError(f"must be at most {MAX_GRPC_NAME} characters")
    try:
        re2.compile(text)
    except re2.error as e:
        raise ValueError(f"{text!r} is not an RE2 expression ({e})") from None
    return text


def _whole(pattern: str) -> str:
    """
    An RE2 expression matching the whole path, case-sensitively: the
    lowering prefixes C{(?i)} and anchors at the start only (ingress-nginx's
    semantics), which gRPC names must not have.
    """
    return f"(?-i:{pattern})$"


class _GrpcRouteTranslator(_RouteTranslator):
    """
    One GRPCRoute's spec.  A method match is a match on the request path,
    which gRPC spells C{/service/method}:

      - Exact service and method: that exact path;
      - Exact service alone: the path prefix C{/service} (every method);
      - anything else (an Exact method alone, RegularExpression): an RE2
        expression on the whole path, an absent part matching any segment.

    Precedence (L{tenantgw.compile.precedence}) puts an exact service and
    method first, then counts service characters, then method characters
    (L{RouteMatch.precedence_length}), then header matches: the GRPCRoute
    spec's order once the hostname is chosen.
    """

    rule_fields = GRPC_RULE_FIELDS
    match_all = RouteMatch(precedence_length=0)  # as a match without method or headers

    def _match(self, raw: object, path: str) -> RouteMatch | None:
        c = self.checker
        section = c.mapping(raw, path, GRPC_MATCH_FIELDS)
        if section is None:
            return None
        path_type, value, length = PATH_PREFIX, "/", 0
        method = section.section("method", GRPC_METHOD_FIELDS)
        if method is not None:
            kind = method.string("type") or "Exact"
            if kind == "Exact":
                service = method.string("service", _validate_grpc_service)
                name = method.string("method", _validate_grpc_method)
                if service and name:
                    path_type, value = PATH_EXACT, f"/{service}/{name}"
                elif service:
                    path_type, value = PATH_PREFIX, f"/{service}"
                elif name:
                    path_type = PATH_REGEX
                    value = _whole(f"/{_ANY_SEGMENT}/{re2.escape(name)}")
            elif kind == "RegularExpression":
                service = method.string("service", _validate_re2)
                name = method.string("method", _validate_re2)
                if service or name:
                    path_type = PATH_REGEX
                    value = _whole(f"/(?:{service or _ANY_SEGMENT})/(?:{name or _ANY_SEGMENT})")
            else:
                c.fail(method.at("type"), f"must be Exact or RegularExpression, got {kind!r}")
                service = name = None
            # The spec's order: more characters of service, then of method.
            length = len(service or "") * (MAX_GRPC_NAME + 1) + len(name or "")
            if not method.raw("service") and not method.raw("method"):
                c.fail(method.path, "needs a service, a method or both")
        headers: list[HeaderMatch] = []
        seen: set[str] = set()
        for item_path, raw_header in section.items("headers", MAX_MATCH_CONDITIONS):
            item = c.mapping(raw_header, item_path, NAME_VALUE_FIELDS)
            if item is None:
                continue
            kind = item.string("type") or "Exact"
            if kind not in ("Exact", "RegularExpression"):
                c.fail(item.at("type"), f"must be Exact or RegularExpression, got {kind!r}")
                continue
            regex = kind == "RegularExpression"
            header = item.string("name", names.validate_header_name, required=True)
            pattern = item.string(
                "value", _validate_re2 if regex else names.validate_header_value, required=True
            )
            if header is None or pattern is None or header in seen:
                continue  # a repeated name: the first entry wins, as the spec says
            seen.add(header)
            headers.append(HeaderMatch(header, f"^(?:{pattern})$" if regex else pattern, regex))
        return RouteMatch(
            path=value, path_type=path_type, headers=tuple(headers), precedence_length=length
        )

    def _filter(self, raw: object, path: str) -> tuple[str, Any] | None:
        section = self.checker.mapping(raw, path, GRPC_FILTER_FIELDS)
        if section is None:
            return None
        kind = section.string("type", required=True)
        if kind is None:
            return None
        if kind not in GRPC_FILTERS:
            self.checker.fail(section.at("type"), f"must be one of {', '.join(GRPC_FILTERS)}")
            return None
        if kind in _GRPC_REFUSED_FILTERS:
            self.refuse(section.at("type"), _GRPC_REFUSED_FILTERS[kind])
            return None
        return super()._filter(raw, path)

    def _backend(self, raw: object, path: str, *, weighted: bool = True) -> _Backend | None:
        backend = super()._backend(raw, path, weighted=weighted)
        if backend is None:
            return None
        # gRPC is HTTP/2: h2c to the backend, whatever the Service port says.
        return evolve(backend, ref=evolve(backend.ref, protocol="H2C"))


class _References:
    """
    The checks a route's backends need beyond its own spec: a
    ReferenceGrant for another namespace, the Service's existence.  They
    change with other objects, so they run on every compile.
    """

    def __init__(
        self,
        namespace: str,
        grants: _Grants,
        services: frozenset[tuple[str, str]],
        kind: str = "HTTPRoute",
    ) -> None:
        self.kind = kind
        self.namespace = namespace
        self.grants = grants
        self.services = services
        self.problems: list[tuple[str, str]] = []  # (reason, message)

    def refused(self, backend: _Backend) -> str | None:
        reason, message = backend.refused, backend.message
        target, name = backend.target_namespace, backend.ref.service
        if reason is None and not self.grants.permits(
            self.kind, self.namespace, "", "Service", target, name
        ):
            reason = REF_NOT_PERMITTED
            message = (
                f"{backend.path}: Service {target}/{name} is in another namespace and no "
                "ReferenceGrant there permits it"
            )
        elif reason is None and (target, name) not in self.services:
            reason = BACKEND_NOT_FOUND
            message = f"{backend.path}: Service {target}/{name} not found"
        if reason is not None and (reason, message) not in self.problems:
            self.problems.append((reason, message))
        return reason


_SPEC_FIELDS = ("parentRefs", "hostnames", "rules")


def _validate_origin(origin: str) -> str:
    """C{*}, or C{scheme://host[:port]} with an optional C{*.} wildcard host."""
    if origin == "*":
        return origin
    scheme, sep, rest = origin.partition("://")
    if not sep or scheme not in ("http", "https") or not rest or "/" in rest:
        raise ValueError("must be '*' or an origin like 'https://app.example.com'")
    host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if port and not port.isdigit():
        raise ValueError("the port of an origin must be a number")
    names.validate_hostname(host, allow_wildcard=True)
    return origin.lower()


def _validate_cors_method(method: str) -> str:
    if method != "*" and method not in _METHODS:
        raise ValueError(f"must be '*' or one of {', '.join(_METHODS)}")
    return method


def _validate_cors_header(name: str) -> str:
    return name if name == "*" else names.validate_header_name(name)


@frozen
class _RedirectDraft:
    scheme: str | None = None
    hostname: str | None = None
    port: int | None = None
    full_path: str | None = None
    prefix: str | None = None
    status: int = 302
    path: str = ""

    def for_listener(self, scheme: str, listener_port: int) -> Redirect:
        """
        The spec's port rules: an explicit port; else the well-known port
        of an explicit scheme; else the listener's port.  Well-known ports
        are left out of Location (L{Redirect.port} of None).
        """
        if self.port is not None:
            port: int | None = self.port
        elif self.scheme is not None:
            port = None
        else:
            port = listener_port or None
        target_scheme = self.scheme or scheme
        if port == _DEFAULT_PORT[target_scheme]:
            port = None
        return Redirect(
            scheme=self.scheme,
            host=self.hostname,
            port=port,
            path=self.full_path,
            status_code=self.status,
            replace_prefix=self.prefix,
        )


@frozen
class _RewriteDraft:
    hostname: str | None = None
    full_path: str | None = None
    prefix: str | None = None
    path: str = ""

    def rewrite(self) -> Rewrite | None:
        if self.hostname is None and self.full_path is None and self.prefix is None:
            return None
        return Rewrite(replace_prefix=self.prefix, host=self.hostname, full_path=self.full_path)


@functools.lru_cache(maxsize=65536)
def _rule_routes(
    rule: _Rule, route_name: str, scheme: str, listener_port: int, reasons: tuple[str | None, ...]
) -> tuple[Route, ...]:
    """
    L{_Rule.routes}, memoized: a rebuild builds the same routes for every
    unchanged rule.  C{reasons} lists, in order, why each backend (then each
    mirror) cannot be used, or None.
    """
    mirrors = [m.backend for k, m in rule.filters if k == "RequestMirror"]
    refused = {id(b): r for b, r in zip((*rule.backends, *mirrors), reasons)}
    return rule.routes(route_name, scheme, listener_port, refused)


@frozen(cache_hash=True)
class _Rule:
    name: str
    index: int
    matches: tuple[RouteMatch, ...]
    filters: tuple[tuple[str, Any], ...]
    backends: tuple[_Backend, ...]
    request_timeout: float | None
    backend_timeout: float | None
    has_backend_refs: bool

    def _filter(self, kind: str) -> Any:
        return next((body for k, body in self.filters if k == kind), None)

    def prefix_rule_broken(self) -> str | None:
        """ReplacePrefixMatch needs a PathPrefix match to know what to replace: the field path."""
        for kind in ("RequestRedirect", "URLRewrite"):
            draft = self._filter(kind)
            if (
                draft is not None
                and draft.prefix is not None
                and any(m.path_type != PATH_PREFIX for m in self.matches)
            ):
                return str(draft.path)
        return None

    def routes(
        self,
        route_name: str,
        scheme: str,
        listener_port: int,
        refused: Mapping[int, str | None],
    ) -> tuple[Route, ...]:
        """C{refused}: backend (by id) -> the reason it cannot be used, from L{_References}."""
        redirect_draft: _RedirectDraft | None = self._filter("RequestRedirect")
        rewrite_draft: _RewriteDraft | None = self._filter("URLRewrite")
        usable = tuple(b.ref for b in self.backends if refused.get(id(b)) is None)
        refused_weight = sum(b.ref.weight for b in self.backends if refused.get(id(b)) is not None)
        if redirect_draft is None and not usable and not refused_weight:
            # No backends and nothing that answers: the spec's 500.
            refused_weight = 1
        common: dict[str, Any] = {
            "backends": () if redirect_draft is not None else usable,
            "redirect": redirect_draft.for_listener(scheme, listener_port)
            if redirect_draft
            else None,
            "rewrite": rewrite_draft.rewrite() if rewrite_draft else None,
            "request_headers": self._filter("RequestHeaderModifier") or HeaderModifier(),
            "response_headers": self._filter("ResponseHeaderModifier") or HeaderModifier(),
            "timeout_seconds": self.request_timeout,
            "backend_timeout_seconds": self.backend_timeout,
            "mirrors": tuple(
                Mirror(body.backend.ref, body.percent)
                for kind, body in self.filters
                if kind == "RequestMirror" and refused.get(id(body.backend)) is None
            ),
            "cors": self._filter("CORS"),
            "refused_backend_weight": 0 if redirect_draft is not None else refused_weight,
        }
        return tuple(
            Route(name=f"{route_name}.{self.name}", match=match, **common) for match in self.matches
        )


# --- the whole translation -----------------------------------------------------


def translate_gateway_api(
    objects: Mapping[str, Sequence[KubeObject]],
    options: GatewayApiOptions = GatewayApiOptions(),
) -> GatewayApiTranslation:
    """
    C{objects} by kind: C{GatewayClass}, C{Gateway}, C{HTTPRoute},
    C{GRPCRoute}, C{ReferenceGrant}, C{Namespace} (labels for allowedRoutes
    selectors) and C{Service} (to tell a missing backend from a present one).
    """
    classes = _our_classes(objects.get("GatewayClass", ()), options.controller_name)
    class_names = {name_of(c) for c in classes}
    statuses: list[ObjectStatus] = [_class_status(c) for c in classes]
    grants = _Grants(objects.get("ReferenceGrant", ()))
    namespace_labels = {name_of(ns): labels_of(ns) for ns in objects.get("Namespace", ())}
    services = frozenset((namespace_of(s), name_of(s)) for s in objects.get("Service", ()))

    gateways: dict[ObjectKey, tuple[KubeObject, list[_ListenerDraft]]] = {}
    gateway_parts: dict[
        ObjectKey, tuple[list[Condition], dict[str, list[Condition]], dict[str, list[str]]]
    ] = {}
    for gateway in objects.get("Gateway", ()):
        if spec(gateway).get("gatewayClassName") not in class_names:
            continue
        if (
            options.gateways is not None
            and (namespace_of(gateway), name_of(gateway)) not in options.gateways
        ):
            continue
        key = ObjectKey("Gateway", namespace_of(gateway), name_of(gateway))
        drafts, gateway_conditions, listener_conditions, listener_kinds = _translate_gateway(
            gateway, grants
        )
        gateways[key] = (gateway, drafts)
        gateway_parts[key] = (gateway_conditions, listener_conditions, listener_kinds)

    attached: dict[tuple[ObjectKey, str], int] = defaultdict(int)
    claims: _KindClaims = defaultdict(list)
    routes: list[TranslatedRoute] = []
    # Oldest first across both kinds: where an HTTPRoute and a GRPCRoute
    # want the same hostname on one listener, the older is the one accepted.
    ordered = sorted(
        ((kind, route) for kind in ROUTE_KINDS for route in objects.get(kind, ())),
        key=lambda pair: age_key(pair[1]),
    )
    for kind, route_object in ordered:
        translated, status = _translate_route(
            route_object, kind, gateways, grants, services, namespace_labels, attached, claims
        )
        routes.extend(translated)
        if status is not None:
            statuses.append(status)

    listeners: list[Listener] = []
    for key, (_gateway, drafts) in gateways.items():
        gateway_conditions, listener_conditions, listener_kinds = gateway_parts[key]
        listeners.extend(d.listener for d in drafts if d.usable)
        statuses.append(
            ObjectStatus(
                key,
                tuple(gateway_conditions),
                listeners=tuple(
                    ListenerStatus(
                        d.listener.name,
                        attached[(key, d.listener.name)],
                        tuple(listener_kinds[d.listener.name]),
                        tuple(listener_conditions[d.listener.name]),
                    )
                    for d in drafts
                ),
            )
        )
    statuses.sort(key=lambda s: (s.key.kind, s.key.namespace, s.key.name))
    return GatewayApiTranslation(tuple(listeners), tuple(routes), tuple(statuses))


# Per (Gateway, listener name): the accepted routes' (kind, "namespace/name",
# hostnames on that listener), for the HTTPRoute/GRPCRoute conflict rule.
_KindClaims = dict[tuple[ObjectKey, str], list[tuple[str, str, tuple[str, ...]]]]


def _hostnames_meet(ours: Sequence[str], theirs: Sequence[str]) -> bool:
    """Whether two routes' hostnames on one listener share a name (wildcards included)."""
    for a in ours:
        for b in theirs:
            if ANY_HOST in (a, b) or a == b:
                return True
            if (a.startswith("*.") and _covers(a, b)) or (b.startswith("*.") and _covers(b, a)):
                return True
    return False


def _other_kind_rival(
    claims: _KindClaims, listener: tuple[ObjectKey, str], kind: str, hosts: Sequence[str]
) -> tuple[str, str] | None:
    """
    The older route of the other kind already accepted on C{listener} for
    one of C{hosts}, if any: GRPCRoute's spec says exactly one of an
    HTTPRoute and a GRPCRoute whose hostnames intersect on a listener is
    accepted, the oldest (then by namespace/name), since both would claim
    the same requests.
    """
    for rival_kind, rival, rival_hosts in claims.get(listener, ()):
        if rival_kind != kind and _hostnames_meet(hosts, rival_hosts):
            return rival_kind, rival
    return None


def _translate_route(
    http_route: KubeObject,
    kind: str,
    gateways: Mapping[ObjectKey, tuple[KubeObject, list[_ListenerDraft]]],
    grants: _Grants,
    services: frozenset[tuple[str, str]],
    namespace_labels: Mapping[str, Mapping[str, str]],
    attached: dict[tuple[ObjectKey, str], int],
    claims: _KindClaims,
) -> tuple[list[TranslatedRoute], ObjectStatus | None]:
    namespace, name = namespace_of(http_route), name_of(http_route)
    generation = generation_of(http_route)
    parsed = parse_route(http_route, kind)
    hostnames, rules, problems = parsed.hostnames, parsed.rules, parsed.problems
    route_ok = not problems
    references = _References(namespace, grants, services, kind)
    refused = {
        id(b): references.refused(b)
        for rule in rules
        for b in (*rule.backends, *(m.backend for k, m in rule.filters if k == "RequestMirror"))
    }
    if references.problems:
        refs = condition(
            RESOLVED_REFS,
            False,
            references.problems[0][0],
            "; ".join(message for _, message in references.problems),
            generation=generation,
        )
    else:
        refs = condition(RESOLVED_REFS, True, RESOLVED_REFS, generation=generation)

    # The model route's name prefix: a GRPCRoute's "grpc:NAME" (":" is in no
    # object name) so an HTTPRoute of the same name never shares its route
    # names (metrics labels, /api/tenants).
    prefix = name if kind == "HTTPRoute" else f"grpc:{name}"
    raw_parents = spec(http_route).get("parentRefs") or []
    parents: list[ParentStatus] = []
    result: list[TranslatedRoute] = []
    order_base = age_key(http_route)
    for raw in raw_parents[:MAX_PARENTS] if isinstance(raw_parents, list) else ():
        if not isinstance(raw, Mapping):
            continue
        if (raw.get("group") or GROUP) != GROUP or (raw.get("kind") or "Gateway") != "Gateway":
            continue
        key = ObjectKey(
            "Gateway", str(raw.get("namespace") or namespace), str(raw.get("name") or "")
        )
        if key not in gateways:
            continue  # not ours: another controller writes that parent's status
        section_name = raw.get("sectionName") if isinstance(raw.get("sectionName"), str) else None
        port = raw.get("port") if isinstance(raw.get("port"), int) else None
        _gateway, drafts = gateways[key]
        candidates = [
            d
            for d in drafts
            if (section_name is None or d.listener.name == section_name)
            and (port is None or d.listener.port == port)
        ]

        admitting = [
            d
            for d in candidates
            if _admits(d, kind, key.namespace, namespace, namespace_labels.get(namespace))
        ]
        matching = [(d, intersect_hostnames(d.listener.hostname, hostnames)) for d in admitting]
        matching = [(d, hosts) for d, hosts in matching if hosts]
        rivals = {
            id(d): _other_kind_rival(claims, (key, d.listener.name), kind, hosts)
            for d, hosts in matching
        }
        kept = [(d, hosts) for d, hosts in matching if rivals[id(d)] is None]
        if not candidates:
            reason, message = (
                NO_MATCHING_PARENT,
                "no listener of the Gateway has that sectionName/port",
            )
        elif not admitting:
            reason = NOT_ALLOWED_BY_LISTENERS
            message = "the listeners' allowedRoutes do not admit this namespace or kind"
        elif not matching:
            reason = NO_MATCHING_LISTENER_HOSTNAME
            message = "no hostname of the route intersects a listener's hostname"
        elif not route_ok:
            reason, message = UNSUPPORTED_VALUE, "; ".join(problems)
        elif not kept:
            rival_kind, rival = next(r for r in rivals.values() if r is not None)
            reason = HOSTNAME_CONFLICT
            message = (
                f"the older {rival_kind} {rival} serves these hostnames on the listener;"
                " an HTTPRoute and a GRPCRoute may not share one"
            )
        else:
            reason, message = ACCEPTED, ""
        accepted = condition(ACCEPTED, reason == ACCEPTED, reason, message, generation=generation)
        parents.append(ParentStatus(key, section_name, port, (accepted, refs)))
        if not accepted.ok:
            continue
        for draft, hosts in kept:
            claims[(key, draft.listener.name)].append((kind, f"{namespace}/{name}", hosts))
            attached[(key, draft.listener.name)] += 1
            if not draft.usable:
                continue
            scheme = _SCHEME_OF[draft.listener.protocol]
            for rule in rules:
                reasons = tuple(
                    refused.get(id(b))
                    for b in (
                        *rule.backends,
                        *(m.backend for k, m in rule.filters if k == "RequestMirror"),
                    )
                )
                for model_route in _rule_routes(rule, prefix, scheme, draft.listener.port, reasons):
                    result.append(
                        TranslatedRoute(
                            namespace=namespace,
                            origin=ObjectKey(kind, namespace, name),
                            hosts=hosts,
                            scheme=scheme,
                            route=model_route,
                            order=(*order_base, rule.index),
                            source=f"{kind} {name} spec.rules[{rule.index}]",
                        )
                    )
    if not parents:
        return result, None
    return result, ObjectStatus(ObjectKey(kind, namespace, name), parents=tuple(parents))
