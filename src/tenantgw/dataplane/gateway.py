"""
The data plane: Host -> tenant -> route -> endpoint, for every request.

A snapshot is turned into a tree of handlers once, when it is applied (host
table -> L{TenantHandler} -> L{RouteHandler}), and the tree is swapped in a
single attribute assignment.  A request reads the tree once, at its start,
and keeps that tree for its whole life, so a reload never changes the rules
under a request in flight.  Quota state lives outside the tree, keyed by
namespace, so a reload does not hand anyone a fresh budget.
"""

from __future__ import annotations

import functools
import math
import random
import re
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from tenantgw.dataplane.access import (
    AddressVerdicts,
    CredentialChecker,
    client_address,
)
from tenantgw.dataplane.balancing import (
    AFFINITY_COOKIE,
    BackendPicker,
    EndpointKey,
    EndpointLoad,
    affinity_token,
    cookie_value,
    endpoint_key,
)
from tenantgw.dataplane.cache import (
    CachedResponse,
    CacheFill,
    ResponseCache,
    request_may_use_cache,
)
from tenantgw.dataplane.channel import GatewayChannel
from tenantgw.dataplane.cors import CorsPolicy, is_preflight
from tenantgw.dataplane.deadlines import Deadlines
from tenantgw.dataplane.health import ActiveChecks, EndpointHealth, ProbeTarget
from tenantgw.dataplane.http1_front import DEFAULT_HTTP1_FRONT, HTTP1_FRONTS, NativeChannel
from tenantgw.dataplane.limits import Bucket, Denial, InFlight, RateLimiter
from tenantgw.dataplane.matching import first_match
from tenantgw.dataplane.mirror import MIRROR_HEADER, Mirrors, MirrorTarget
from tenantgw.dataplane.proxy import Exchange, upgrade_requested
from tenantgw.dataplane.quota_redis import Decision, RedisQuota
from tenantgw.dataplane.quota_redis import connect as connect_redis
from tenantgw.dataplane.request import GatewayRequest
from tenantgw.dataplane.responses import respond, respond_empty
from tenantgw.dataplane.upstream import ResponseHeaders, UpstreamPool
from tenantgw.http1.request_id import SUPPLIED_REQUEST_ID as _REQUEST_ID
from tenantgw.http1.request_id import new_request_id
from tenantgw.http2.client import H2UpstreamPool
from tenantgw.http2.negotiate import NegotiatingProtocol, PriorKnowledgeProtocol
from tenantgw.http2.server import H2ServerConnection
from tenantgw.plans.routes import AccessPlan, BackendPlan, RoutePlan
from tenantgw.plans.snapshot import (
    ANY_HOST,
    EMPTY_SNAPSHOT,
    Snapshot,
    TenantPlan,
    changed_namespaces,
)
from tenantgw.tls.upstream import UpstreamTrust
from tenantgw.values import LB_LEAST_REQUEST, IPNetwork, RateLimit, Redirect
from tenantgw.wire.fields import HOP_BY_HOP, UNDERSCORES_DROP, connection_options
from tenantgw.wire.paths import (
    DEFAULT_POLICY,
    PathPolicy,
    expand_target,
    normalize_path,
    replace_prefix,
    valid_query,
)

if TYPE_CHECKING:
    from tenantgw.admin.access_log import AccessLog
    from tenantgw.admin.metrics import Metrics

_log = Logger()
_HOST = re.compile(rb"\A[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\Z")
DEFAULT_UPSTREAM_TIMEOUT = 60.0
DEFAULT_BODY_TIMEOUT = 15.0


def host_of(request: GatewayRequest) -> str | None:
    """
    The lower-cased host name the request is for, without port or trailing
    dot; L{None} when it is not a well-formed name (which is a 400: no
    tenant's rules should be consulted for a Host we cannot parse).

    An absolute-form target (RFC 9112 section 3.2.2) names the authority
    itself.  A Host field that names another host is refused rather than
    overridden: routing by one name and forwarding the other is how a
    request chosen by one tenant's rules reaches another tenant's backend.
    The target's authority becomes the one Host that is forwarded.
    """
    target = request.path
    hosts = request.requestHeaders.getRawHeaders(b"host")
    if target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
        rest = target.split(b"://", 1)[1]
        slash = rest.find(b"/")
        raw = rest if slash < 0 else rest[:slash]
        request.path = b"/" if slash < 0 else rest[slash:]
        host = normalize_host(raw)
        if host is None or (hosts and normalize_host(hosts[0]) != host):
            return None
        request.requestHeaders.setRawHeaders(b"host", [raw])
        return host
    if not hosts:
        return None
    return normalize_host(hosts[0])


@functools.lru_cache(maxsize=4096)
def normalize_host(raw: bytes) -> str | None:
    """Cached: a gateway sees the same few Host values over and over."""
    if raw.startswith(b"["):
        return None  # IP literals are never a tenant's host
    colon = raw.rfind(b":")
    if colon >= 0:
        port = raw[colon + 1 :]
        if port and not port.isdigit():
            return None
        raw = raw[:colon]
    raw = raw.lower().rstrip(b".")
    if not raw or len(raw) > 253 or _HOST.match(raw) is None:
        return None
    return raw.decode("ascii")


# A tunnel to wherever the client names (CONNECT) is not a reverse proxy's
# job, and TRACE makes a backend echo the request, credentials included.
_REFUSED_METHODS: dict[bytes, tuple[int, list[tuple[bytes, bytes]]]] = {
    b"CONNECT": (501, []),
    b"TRACE": (405, [(b"allow", b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")]),
}
# Connection may nominate any field as hop-by-hop, but Host is what the
# gateway routed by and forwards: it is never the client's to remove.
_NEVER_NOMINATED = frozenset({b"host"})


def strip_hop_by_hop(request: GatewayRequest, connection: Sequence[bytes]) -> None:
    """
    Removes the hop-by-hop fields and every field the client's Connection
    nominates, once, before any rule reads the headers or any route edit
    writes them: otherwise C{Connection: X-Routed} would strip the header a
    route sets, after it was set.  Whether the client asks for a protocol
    switch is decided first, since it reads Upgrade and Connection.
    """
    request.upgrade = upgrade_requested(request)
    headers = request.requestHeaders
    for name in (connection_options(connection) | HOP_BY_HOP) - _NEVER_NOMINATED:
        headers.removeHeader(name)


def _rate_policy_headers(denial: Denial) -> list[tuple[bytes, bytes]]:
    """Retry-After plus the IETF httpapi RateLimit-Policy / RateLimit fields."""
    limit = denial.limit
    window = max(1, math.ceil(limit.burst / limit.requests_per_second))
    wait = max(1, math.ceil(denial.retry_after))
    name = denial.policy_name.encode("ascii")
    return [
        (b"retry-after", b"%d" % wait),
        (b"ratelimit-policy", b'"%s";q=%d;w=%d' % (name, limit.burst, window)),
        (b"ratelimit", b'"%s";r=0;t=%d' % (name, wait)),
    ]


class RouteHandler:
    def __init__(self, tenant: TenantHandler, plan: RoutePlan) -> None:
        self.tenant = tenant
        self.plan = plan
        self.name = plan.name
        self.matcher = plan.match
        health = tenant.gateway.health
        self.picker = BackendPicker(
            plan.backends,
            plan.balancing,
            tenant.gateway.endpoint_load,
            available=health.available,
            unavailable=health.unavailable,
        )
        self.retry_attempts = plan.retry_attempts
        # Endpoints whose backend is not plain HTTP/1.1 (h2c, TLS), or None.
        self.protocols = endpoint_protocols(plan.backends)
        self.access: tuple[AccessPlan, ...] = plan.access
        self.checks_address = any(a.checks_address for a in plan.access)
        self.address_verdicts = AddressVerdicts(plan.access)
        self.checks_credentials = any(a.checks_credentials for a in plan.access)
        self.timeout = plan.attempt_timeout or tenant.gateway.upstream_timeout
        self.redirect: Redirect | None = plan.redirect
        self.replace_prefix = plan.rewrite_prefix
        self.full_path = plan.rewrite_full_path
        self.regex_target = plan.rewrite_regex_target
        # ingress-nginx proxy-body-size: the smaller of the route's and the tenant's.
        limits = [n for n in (tenant.max_body, plan.max_request_body_bytes) if n is not None]
        self.max_body = min(limits) if limits else None
        self.affinity_cookie = plan.affinity_cookie or AFFINITY_COOKIE
        self.rewrite_host = plan.rewrite_host
        self.request_edits = plan.request_edits
        response_edits = plan.response_edits
        if response_edits is not None:
            self._response_edits = response_edits
            self._replaced = response_edits.replaced
        self.edit_response = None if response_edits is None else self._edit_response
        self.cors = CorsPolicy.of(plan.cors) if plan.cors is not None else None
        self.mirrors = tuple(MirrorTarget(b, percent) for b, percent in plan.mirrors)
        self.refused_share = plan.refused_share
        self.cache = plan.cache
        self.rate_bucket = (
            Bucket(("route", tenant.namespace, plan.name), plan.rate, "route")
            if plan.rate
            else None
        )
        # ingress-nginx limit-rps and limit-connections: per client, on this route.
        self.per_client_rate = plan.per_client_rate
        self.max_client_concurrent = plan.max_client_concurrent

    def _edit_response(self, headers: ResponseHeaders) -> ResponseHeaders:
        """Remove, then set (replacing every value), then add."""
        edits = self._response_edits
        replaced = self._replaced
        result = [(name, value) for name, value in headers if name not in replaced]
        result.extend(edits.set)
        result.extend(edits.add)
        return result

    def another_endpoint(self, tried: set[EndpointKey]) -> EndpointKey | None:
        picked = self.picker.pick(exclude=tried)
        return endpoint_key(*picked) if picked is not None else None

    def target_for(self, path: bytes, query: bytes) -> bytes:
        if self.full_path is not None:
            return self.full_path + query
        if self.regex_target is not None and self.matcher.path_regex is not None:
            found = self.matcher.path_regex.match(path)
            if found is not None:
                return expand_target(self.regex_target, found.groups()) + query
        replace = self.replace_prefix
        if replace is not None:
            path = replace_prefix(path, self.matcher.path, replace)
        return path + query


class TenantHandler:
    def __init__(self, gateway: Gateway, compiled: TenantPlan) -> None:
        self.gateway = gateway
        self.compiled = compiled
        self.namespace = compiled.namespace
        quota = compiled.quota
        self.tenant_bucket = (
            Bucket(("tenant", self.namespace), quota.rate, "tenant") if quota.rate else None
        )
        self.per_client: RateLimit | None = quota.per_client
        self.max_concurrent = quota.max_concurrent_requests
        self.max_body = quota.max_request_body_bytes
        self.address_verdicts = AddressVerdicts((compiled.access,))
        handlers = {id(route): RouteHandler(self, route) for route in compiled.routes}
        self.routes = tuple((h.matcher, h) for h in handlers.values())
        # (scheme, exact host) and (scheme, ".suffix") -> routes, when the
        # tenant's hosts serve different routes (Gateway API hostnames).
        self.host_routes = {
            (scheme, key[1:] if key.startswith("*.") else key): tuple(
                (handlers[id(r)].matcher, handlers[id(r)]) for r in routes
            )
            for (scheme, key), routes in compiled.host_routes.items()
        }
        self.wildcard_keys = sorted(
            {key[1:] for _, key in compiled.host_routes if key.startswith("*.")},
            key=len,
            reverse=True,
        )

    def routes_for(self, request: GatewayRequest, host: str) -> tuple[Any, ...]:
        host_routes = self.host_routes
        if not host_routes:
            return self.routes
        scheme = "https" if request.isSecure() else "http"
        routes = host_routes.get((scheme, host))
        if routes is not None:
            return routes
        for suffix in self.wildcard_keys:
            if host.endswith(suffix):
                return host_routes.get((scheme, suffix), ())
        return host_routes.get((scheme, ANY_HOST), ())

    def handle(self, request: GatewayRequest, host: str) -> None:
        gateway = self.gateway
        gateway.route_to(request, self.namespace)
        uri = request.uri
        query_at = uri.find(b"?")
        query = uri[query_at:] if query_at >= 0 else b""
        normalized = normalize_path(request.path, gateway.path_policy)
        if normalized is None or (query and not valid_query(query[1:])):
            respond(request, 400, close=True)
            return
        # The normalized path is the one forwarded; routes are compared with
        # it less its path parameters (see tenantgw.wire.paths).
        path = normalized.forward
        route: RouteHandler | None = first_match(
            self.routes_for(request, host),
            request.method,
            normalized.match,
            request.requestHeaders.getRawHeaders,
            query[1:] if query else None,
        )
        if route is None:
            respond(request, 404)
            return
        request.route_name = route.name
        if route.checks_address and not route.address_verdicts.allowed(request.client_address):
            respond(request, 403)
            return
        if route.cors is not None and self._answered_cors(request, route.cors):
            return
        if route.checks_credentials:
            verdict = gateway.check_credentials(request, route.access)
            if isinstance(verdict, Deferred):
                request.setHeader(b"x-request-id", request.request_id)
                verdict.addCallback(
                    lambda ok: self._after_credentials(ok, request, route, host, path, query)
                )
                verdict.addErrback(lambda f: gateway.internal_error(request, f))
                return
            if not verdict:
                self._unauthorized(request, route)
                return
        self._admit(request, route, host, path, query)

    def _answered_cors(self, request: GatewayRequest, cors: CorsPolicy) -> bool:
        """
        A preflight is answered here, before credentials are asked for
        (browsers send none with it); an actual request's response gets the
        CORS headers added.
        """
        headers = request.requestHeaders
        origin = headers.getRawHeaders(b"origin", [None])[0]
        if origin is None:
            return False
        asked = headers.getRawHeaders(b"access-control-request-method", [None])[0]
        if is_preflight(request.method, origin, asked):
            requested = headers.getRawHeaders(b"access-control-request-headers", [])
            respond_empty(request, 200, cors.preflight_headers(origin, asked or b"", requested))
            return True
        request.cors_headers = cors.response_headers(origin)
        return False

    def _after_credentials(
        self,
        ok: bool,
        request: GatewayRequest,
        route: RouteHandler,
        host: str,
        path: bytes,
        query: bytes,
    ) -> None:
        if request.finished or request.channel is None:
            return
        if not ok:
            self._unauthorized(request, route)
            return
        self._admit(request, route, host, path, query)

    def _unauthorized(self, request: GatewayRequest, route: RouteHandler) -> None:
        realms = [a.basic_auth_realm for a in route.access if a.basic_auth_realm is not None]
        headers = []
        if realms:
            headers.append(
                (b"www-authenticate", b'Basic realm="%s", charset="UTF-8"' % realms[-1].encode())
            )
        respond(request, 401, headers)

    def _admit(
        self,
        request: GatewayRequest,
        route: RouteHandler,
        host: str,
        path: bytes,
        query: bytes,
    ) -> None:
        gateway = self.gateway
        max_body = route.max_body
        if max_body is not None:
            declared = request.declared_length
            if declared is not None and declared > max_body:
                request.quota_limit = "body"
                respond(request, 413, close=True)
                return
            if declared is None:
                request.on_body_over_limit(max_body, lambda: self._body_too_large(request))
                if request.finished:
                    return
        namespace = self.namespace
        entered = False
        if self.max_concurrent is not None:
            if not gateway.in_flight.try_enter(namespace, self.max_concurrent):
                request.quota_limit = "tenant"
                respond(request, 503, [(b"retry-after", b"1")])
                return
            entered = True
        buckets: list[Bucket] = []
        if self.tenant_bucket is not None:
            buckets.append(self.tenant_bucket)
        if self.per_client is not None:
            buckets.append(
                Bucket(("client", namespace, request.client_address), self.per_client, "client")
            )
        if route.rate_bucket is not None:
            buckets.append(route.rate_bucket)
        if route.per_client_rate is not None:
            buckets.append(
                Bucket(
                    ("route-client", namespace, route.name, request.client_address),
                    route.per_client_rate,
                    "route-client",
                )
            )
        if route.max_client_concurrent is not None:
            slot = ("route-client", namespace, route.name, request.client_address)
            if not gateway.in_flight.try_enter(slot, route.max_client_concurrent):
                self._release_slot(entered)
                request.quota_limit = "route-client"
                respond(request, 503, [(b"retry-after", b"1")])
                return
            request.client_slot = slot
        if buckets:
            shared = gateway.shared_quota
            if shared is not None:
                request.setHeader(b"x-request-id", request.request_id)
                decision = shared.decide(buckets)
                decision.addCallback(self._after_quota, request, route, host, path, query, entered)
                decision.addErrback(lambda f: gateway.internal_error(request, f))
                return
            denial = gateway.limiter.try_acquire(buckets)
            if denial is not None:
                self._release_slot(entered, request)
                request.quota_limit = denial.policy_name
                respond(request, 429, _rate_policy_headers(denial))
                return
        self._forward(request, route, host, path, query, entered)

    def _after_quota(
        self,
        decision: Decision,
        request: GatewayRequest,
        route: RouteHandler,
        host: str,
        path: bytes,
        query: bytes,
        entered: bool,
    ) -> None:
        if request.finished or request.channel is None or decision is not None:
            # Refused, or the client left while Redis decided: no exchange
            # will release the concurrency slot, so it is released here.
            self._release_slot(entered, request)
        if request.finished or request.channel is None:
            return
        if decision is not None:
            if isinstance(decision, Denial):
                request.quota_limit = decision.policy_name
                respond(request, 429, _rate_policy_headers(decision))
            else:
                respond(request, 503, [(b"retry-after", b"1")])
            return
        self._forward(request, route, host, path, query, entered)

    def _release_slot(self, entered: bool, request: GatewayRequest | None = None) -> None:
        if entered:
            self.gateway.in_flight.leave(self.namespace)
        if request is not None:
            self.gateway.release_client_slot(request)

    def _forward(
        self,
        request: GatewayRequest,
        route: RouteHandler,
        host: str,
        path: bytes,
        query: bytes,
        entered: bool,
    ) -> None:
        gateway = self.gateway
        done = gateway.exchange_done_releasing if entered else gateway.exchange_done
        if route.redirect is not None:
            self._redirect(request, route.redirect, host, path, query, route.matcher.path)
            done(request, request.code)
            return
        share = route.refused_share
        if share and (share >= 1.0 or gateway.chance() < share):
            respond(request, 500)
            done(request, 500)
            return
        cache_fill = None
        cache_header: ResponseHeaders = []
        cache = route.cache
        if cache is not None and request_may_use_cache(b"GET", request.requestHeaders):
            # HEAD may be answered from what a GET stored; only a GET fills.
            tenant_cache = gateway.cache.for_tenant(self.namespace)
            base = (route.name, host.encode("ascii"), path + query)
            hit = tenant_cache.get(base, request.requestHeaders, gateway.cache.clock.seconds())
            if hit is not None:
                self._serve_cached(request, hit)
                done(request, hit.code)
                return
            cache_header = [(b"x-cache", b"MISS")]
            if request.method == b"GET":
                cache_fill = CacheFill(
                    tenant_cache,
                    base,
                    request.requestHeaders.copy(),  # before the route edits them
                    cache.max_body_bytes,
                    cache.max_age_seconds,
                    gateway.cache.clock,
                )
        picker = route.picker
        affinity = (
            cookie_value(request.requestHeaders.getRawHeaders(b"cookie"), route.affinity_cookie)
            if picker.sticky
            else None
        )
        picked = picker.pick(affinity)
        if picked is None:
            respond(request, 503, [(b"retry-after", b"1")])
            done(request, 503)
            return
        backend, endpoint = picked
        key = endpoint_key(backend, endpoint)
        request.upstream = f"{endpoint.address}:{endpoint.port}"
        sticky_cookie = None
        if picker.sticky:
            token = affinity_token(key)
            if token != affinity:
                sticky_cookie = [
                    (
                        b"set-cookie",
                        route.affinity_cookie + b"=" + token + b"; Path=/; HttpOnly",
                    )
                ]
        headers = request.requestHeaders
        if route.checks_credentials:
            headers.removeHeader(b"authorization")
            headers.removeHeader(b"x-api-key")
        edits = route.request_edits
        if edits is not None:
            for name in edits.remove:
                headers.removeHeader(name)
            for name, value in edits.set:
                headers.setRawHeaders(name, [value])
            for name, value in edits.add:
                headers.addRawHeader(name, value)
        original_host = request.requestHeaders.getRawHeaders(b"host", [host.encode("ascii")])[0]
        previous_for = headers.getRawHeaders(b"x-forwarded-for")
        client = request.client_address.encode("ascii")
        scheme = b"https" if request.isSecure() else b"http"
        # ingress-nginx's set, sent on every route: apps moved off it read
        # them, and a client's own values of these names never reach any
        # upstream (proxy._NOT_COPIED). X-Real-IP is the client address,
        # so it follows --trusted-proxies as X-Forwarded-For does.
        forwarded = [
            (
                b"X-Forwarded-For",
                b", ".join([*previous_for, client]) if previous_for else client,
            ),
            (b"X-Forwarded-Proto", scheme),
            (b"X-Forwarded-Host", original_host),
            (b"X-Request-Id", request.request_id),
            (b"X-Real-Ip", client),  # the Header-Case a mirror copy overrides
            (b"X-Scheme", scheme),
        ]
        local_port = getattr(request.getHost(), "port", None)  # a UNIX socket has none
        if local_port is not None:
            forwarded.append((b"X-Forwarded-Port", b"%d" % local_port))
        if previous_for:
            forwarded.append((b"X-Original-Forwarded-For", b", ".join(previous_for)))
        target = route.target_for(path, query)
        upstream_host = route.rewrite_host or original_host
        if (
            route.mirrors
            and request.declared_length == 0
            # A copy is never mirrored again: a mirror that leads back here
            # (directly or through other gateways) must not multiply.
            and not request.requestHeaders.hasHeader(MIRROR_HEADER)
        ):
            gateway.mirrors.send(
                route.mirrors,
                request.method,
                target,
                [
                    *((n, v) for n, v in headers.getAllRawHeaders() if n.lower() != b"host"),
                    (b"Host", [upstream_host]),
                    (MIRROR_HEADER, [b"1"]),
                    *((n, [v]) for n, v in forwarded),
                ],
            )
        exchange = Exchange(
            request,
            gateway.pool,
            gateway.deadlines,
            key,
            request.method,
            target,
            upstream_host,
            forwarded,
            route.timeout,
            route.edit_response,
            done,
            # Only LeastRequest reads in-flight counts: others need not keep them.
            load=gateway.endpoint_load if picker.policy == LB_LEAST_REQUEST else None,
            retry=route.another_endpoint if route.retry_attempts else None,
            attempts=route.retry_attempts,
            extra_response_headers=(sticky_cookie or []) + cache_header + request.cors_headers,
            health=gateway.health,
            cache_fill=cache_fill,
            protocols=route.protocols,
            h2_pool=gateway.h2_pool,
        )
        exchange.start()

    def _serve_cached(self, request: GatewayRequest, hit: CachedResponse) -> None:
        age = int(max(0.0, self.gateway.cache.clock.seconds() - hit.stored_at))
        headers = [
            *hit.headers,
            (b"x-cache", b"HIT"),
            (b"age", b"%d" % age),
            (b"x-request-id", request.request_id),
        ]
        request.start_response(hit.code, hit.reason, headers)
        request.write(hit.body)
        request.finish()

    def _body_too_large(self, request: GatewayRequest) -> None:
        exchange = request.exchange
        if exchange is not None and not exchange.finished:
            exchange.client_gone()
        if request.startedWriting:
            request.abort()
            return
        request.quota_limit = "body"
        respond(request, 413, close=True)

    def _redirect(
        self,
        request: GatewayRequest,
        redirect: Redirect,
        host: str,
        path: bytes,
        query: bytes,
        matched: bytes,
    ) -> None:
        scheme = redirect.scheme or ("https" if request.isSecure() else "http")
        target_host = redirect.host or host
        port = redirect.port
        default_port = 443 if scheme == "https" else 80
        authority = target_host if port in (None, default_port) else f"{target_host}:{port}"
        if redirect.path:
            target_path = redirect.path.encode("ascii")
        elif redirect.replace_prefix is not None:
            target_path = replace_prefix(path, matched, redirect.replace_prefix.encode("ascii"))
        else:
            target_path = path
        if redirect.query is not None:
            query = redirect.query.encode("ascii")
        location = f"{scheme}://{authority}".encode("ascii") + target_path + query
        respond(request, redirect.status_code, [(b"location", location)])


class HostTable:
    """
    Host -> tenant handler; exact names first, then the longest wildcard.

    Built from the table serving before, when there is one: a tenant whose
    plan is the very object that served keeps its handler, and the host map
    is patched for the tenants that changed, so applying one tenant's change
    costs little more than building that tenant's handler.
    """

    def __init__(
        self, gateway: Gateway, snapshot: Snapshot, previous: HostTable | None = None
    ) -> None:
        self.snapshot = snapshot
        if previous is None:
            self._build(gateway, snapshot)
        else:
            self._patch(gateway, snapshot, previous)
        self.wildcards = tuple(
            (suffix, self.handlers[t.namespace]) for suffix, t in snapshot.wildcard_hosts
        )
        self.catch_all = (
            self.handlers[snapshot.catch_all.namespace] if snapshot.catch_all is not None else None
        )

    def _build(self, gateway: Gateway, snapshot: Snapshot) -> None:
        handlers: dict[str, TenantHandler] = {
            namespace: TenantHandler(gateway, tenant)
            for namespace, tenant in snapshot.tenants.items()
        }
        self.handlers = handlers
        self.exact: dict[str, TenantHandler | None] = dict.fromkeys(snapshot.reserved_hosts)
        self.exact.update((host, handlers[t.namespace]) for host, t in snapshot.exact_hosts.items())

    def _patch(self, gateway: Gateway, snapshot: Snapshot, previous: HostTable) -> None:
        old_handlers = previous.handlers
        handlers = dict(old_handlers)
        changed: list[TenantHandler] = []
        removed: list[TenantHandler] = []
        for namespace, tenant in snapshot.tenants.items():
            handler = old_handlers.get(namespace)
            if handler is None or handler.compiled is not tenant:
                if handler is not None:
                    removed.append(handler)
                handler = handlers[namespace] = TenantHandler(gateway, tenant)
                changed.append(handler)
        if len(handlers) != len(snapshot.tenants):
            for namespace in [n for n in handlers if n not in snapshot.tenants]:
                removed.append(handlers.pop(namespace))
        exact = dict(previous.exact)
        old_reserved = previous.snapshot.reserved_hosts
        new_reserved = snapshot.reserved_hosts
        if old_reserved is not new_reserved:
            for host in old_reserved - new_reserved:
                if host in exact and exact[host] is None:
                    del exact[host]
        for handler in removed:
            for host in handler.compiled.hosts:
                if exact.get(host) is handler:
                    del exact[host]
        if old_reserved is not new_reserved:
            exact.update(dict.fromkeys(new_reserved - old_reserved))
        exact_hosts = snapshot.exact_hosts
        for handler in changed:
            for host in handler.compiled.hosts:
                if exact_hosts.get(host) is handler.compiled:
                    exact[host] = handler
        self.handlers = handlers
        self.exact = exact

    def lookup(self, host: str) -> TenantHandler | None:
        exact = self.exact
        if host in exact:
            return exact[host]
        for suffix, candidate in self.wildcards:
            if host.endswith(suffix):
                return candidate
        return self.catch_all


class Gateway:
    """Holds the current host table and the state that outlives reloads."""

    def __init__(
        self,
        reactor: object,
        clock: IReactorTime,
        pool: UpstreamPool,
        credentials: CredentialChecker,
        trusted_proxies: tuple[IPNetwork, ...] = (),
        upstream_timeout: float = DEFAULT_UPSTREAM_TIMEOUT,
    ) -> None:
        self.reactor = reactor
        self.clock = clock
        self.pool = pool
        # HTTP/2 upstreams (h2c and TLS ports that accept h2); gateway_on sets it.
        self.h2_pool: H2UpstreamPool | None = None
        self.credentials = credentials
        self.trusted_proxies = trusted_proxies
        self.upstream_timeout = upstream_timeout
        self.limiter = RateLimiter(clock)
        # Draws the share of requests answered 500 for refused backends, and
        # which requests are mirrored.
        self.chance = random.random
        self.mirrors = Mirrors(reactor, lambda: self.chance())
        # Set when --redis is given: rate limits are then decided by Redis,
        # asynchronously, and C{limiter} is only its fallback.
        self.shared_quota: RedisQuota | None = None
        self.deadlines = Deadlines(clock)
        self.endpoint_load = EndpointLoad()
        self.cache = ResponseCache(clock)
        self.health = EndpointHealth(clock)
        self.active_checks = ActiveChecks(self.health, pool, clock, streams=lambda: self.h2_pool)
        self.in_flight = InFlight()
        self.table = HostTable(self, EMPTY_SNAPSHOT)
        self._probes: dict[str, tuple[TenantPlan, frozenset[ProbeTarget]]] = {}
        self.applied = 0
        # Requests routed and not yet logged: what a drain waits for.
        self.requests_open = 0
        self.draining = False
        # Client HTTP/2 connections, told to go away (gracefully) on drain.
        self.h2_connections: weakref.WeakSet[H2ServerConnection] = weakref.WeakSet()
        self.metrics: Metrics | None = None
        self.access_log: AccessLog | None = None
        # The port clients reach the HTTPS listener on, for HTTP -> HTTPS redirects.
        self.https_redirect_port = 443
        # How request paths are normalized (--keep-slashes, --escaped-slashes).
        self.path_policy: PathPolicy = DEFAULT_POLICY
        # Seconds a request body may stall before a 408 (--body-timeout; 0: never).
        self.body_timeout = DEFAULT_BODY_TIMEOUT

    def start_draining(self) -> None:
        """
        From now on every HTTP/1.1 response carries Connection: close and
        its connection ends after it, and every HTTP/2 connection gets a
        graceful GOAWAY (its streams in flight finish), so keep-alive
        clients move to another replica instead of being cut when this one
        exits.
        """
        self.draining = True
        for connection in list(self.h2_connections):
            connection.drain()

    def stop(self) -> None:
        """Stops the timers that outlive requests: health probes and the pool's sweeper."""
        self.active_checks.stop()
        self.pool.stop()
        if self.h2_pool is not None:
            self.h2_pool.stop()
        self.mirrors.stop()

    @property
    def snapshot(self) -> Snapshot:
        return self.table.snapshot

    def apply(self, snapshot: Snapshot) -> None:
        seen = self.table.snapshot
        table = HostTable(self, snapshot, self.table)
        self.table = table  # the one atomic swap
        targets = self._probe_targets(snapshot, seen)
        if targets is not None:
            self.active_checks.configure(targets)
        self.applied += 1

    def _probe_targets(self, snapshot: Snapshot, seen: Snapshot) -> set[ProbeTarget] | None:
        """
        L{probe_targets}, reusing each unchanged tenant's from the last
        apply; None when they are the same as before, which is what a change
        to a tenant without health checks gives.
        """
        cache = self._probes
        tenants = snapshot.tenants
        visit = changed_namespaces(snapshot, seen)
        if visit is None:
            fresh: dict[str, tuple[TenantPlan, frozenset[ProbeTarget]]] = {}
            for namespace, tenant in tenants.items():
                known = cache.get(namespace)
                if known is not None and known[0] is tenant:
                    fresh[namespace] = known
                else:
                    fresh[namespace] = (tenant, frozenset(tenant_probe_targets(tenant)))
            self._probes = cache = fresh
        else:
            moved = False
            for namespace in visit:
                plan = tenants.get(namespace)
                known = cache.get(namespace)
                before = known[1] if known is not None else frozenset()
                if plan is None:
                    cache.pop(namespace, None)
                    moved = moved or bool(before)
                elif known is None or known[0] is not plan:
                    found = frozenset(tenant_probe_targets(plan))
                    cache[namespace] = (plan, found)
                    moved = moved or found != before
            if not moved:
                return None
        targets: set[ProbeTarget] = set()
        for _, found in cache.values():
            if found:
                targets |= found
        return targets

    def handle(self, request: GatewayRequest) -> None:
        table = self.table
        if self.draining and not request.multiplexed:  # HTTP/2 has no Connection header
            request.gateway_channel.persistent = False
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])
        supplied = request.requestHeaders.getRawHeaders(b"x-request-id")
        request.request_id = (
            supplied[0] if supplied and _REQUEST_ID.match(supplied[0]) else new_request_id()
        )
        peer_host = getattr(request.client, "host", "")  # a UNIX socket peer has none
        trusted = self.trusted_proxies
        request.client_address = (
            client_address(
                peer_host, request.requestHeaders.getRawHeaders(b"x-forwarded-for"), trusted
            )
            if trusted
            else peer_host
        )
        refused_method = _REFUSED_METHODS.get(request.method)
        if refused_method is not None:
            status, extra_headers = refused_method
            respond(request, status, extra_headers, close=True)
            return
        host = host_of(request)
        if host is None:
            respond(request, 400, close=True)
            return
        connection = request.requestHeaders.getRawHeaders(b"connection")
        if connection is not None:
            strip_hop_by_hop(request, connection)
        tenant = table.lookup(host)
        if tenant is None:
            respond(request, 404)
            return
        compiled = tenant.compiled
        if request.isSecure():
            server_name = request.server_name
            if server_name is not None and server_name != host:
                # Checked on every request, since a client may reuse one
                # connection for several hosts: one tenant's certificate must
                # never carry another tenant's traffic.
                named = table.lookup(server_name)
                if named is not None and named is not tenant:
                    respond(request, 421)
                    return
        elif host in compiled.redirect_hosts:
            self.route_to(request, tenant.namespace)  # counted for its tenant
            self._redirect_to_https(request, host)
            return
        if compiled.access.checks_address and not tenant.address_verdicts.allowed(
            request.client_address
        ):
            self.route_to(request, tenant.namespace)
            respond(request, 403)
            return
        tenant.handle(request, host)

    def _redirect_to_https(self, request: GatewayRequest, host: str) -> None:
        port = self.https_redirect_port
        authority = host if port == 443 else f"{host}:{port}"
        query_at = request.uri.find(b"?")
        query = request.uri[query_at:] if query_at >= 0 else b""
        location = b"https://" + authority.encode("ascii") + request.path + query
        respond(request, 308, [(b"location", location)])

    def check_credentials(
        self, request: GatewayRequest, scopes: tuple[AccessPlan, ...]
    ) -> bool | Deferred[bool]:
        """Every scope that asks for credentials must accept them."""
        headers = request.requestHeaders
        authorization = headers.getRawHeaders(b"authorization", [None])[0]
        api_key = headers.getRawHeaders(b"x-api-key", [None])[0]
        pending: list[Deferred[bool]] = []
        for access in scopes:
            if not access.checks_credentials:
                continue
            verdict = self.credentials.check(access, authorization, api_key)
            if isinstance(verdict, Deferred):
                pending.append(verdict)
            elif not verdict:
                return False
        if not pending:
            return True
        if len(pending) == 1:
            return pending[0]
        from twisted.internet.defer import gatherResults

        return gatherResults(pending).addCallback(all)

    def route_to(self, request: GatewayRequest, namespace: str) -> None:
        """
        The request now counts for C{namespace}: in its metrics, and in the
        in-flight gauge's C{tenant} label until it is answered.  Here rather
        than in a property of the request, which every read would pay for.
        """
        previous = request.tenant_namespace
        if namespace == previous:
            return
        request.tenant_namespace = namespace
        metrics = self.metrics
        if metrics is not None and not request.logged:
            metrics.tenant_routed(previous, namespace)

    def exchange_done(self, request: GatewayRequest, status: int) -> None:
        if request.client_slot is not None:
            self.release_client_slot(request)

    def exchange_done_releasing(self, request: GatewayRequest, status: int) -> None:
        self.in_flight.leave(request.tenant_namespace)
        if request.client_slot is not None:
            self.release_client_slot(request)

    def release_client_slot(self, request: GatewayRequest) -> None:
        """A route's per-client concurrency slot (limit-connections), released once."""
        slot = request.client_slot
        if slot is not None:
            request.client_slot = None
            self.in_flight.leave(slot)

    def internal_error(self, request: GatewayRequest, reason: object) -> None:
        _log.failure("request failed inside the gateway", reason)  # type: ignore[arg-type]
        respond(request, 500, close=True)


def endpoint_protocols(backends: Iterable[BackendPlan]) -> dict[EndpointKey, str] | None:
    """Each endpoint's protocol, when any backend of the route is not HTTP/1.1."""
    if all(backend.protocol == "h1" for backend in backends):
        return None
    return {
        endpoint_key(backend, endpoint): backend.protocol
        for backend in backends
        for endpoint in backend.endpoints
    }


def probe_targets(snapshot: Snapshot) -> set[ProbeTarget]:
    targets = set()
    for tenant in snapshot.tenants.values():
        targets.update(tenant_probe_targets(tenant))
    return targets


def tenant_probe_targets(tenant: TenantPlan) -> set[ProbeTarget]:
    targets = set()
    for route in tenant.routes:
        check = route.health_check
        if check is None:
            continue
        for backend in route.backends:
            for endpoint in backend.endpoints:
                targets.add(
                    ProbeTarget(
                        key=endpoint_key(backend, endpoint),
                        host=backend.tls_name or endpoint.address,
                        path=check.path,
                        interval=check.interval_seconds,
                        unhealthy_threshold=check.unhealthy_threshold,
                        healthy_threshold=check.healthy_threshold,
                        protocol=backend.protocol,
                    )
                )
    return targets


def gateway_on(
    reactor: Any,
    threadpool: ThreadPool | None = None,
    trusted_proxies: tuple[IPNetwork, ...] = (),
    upstream_timeout: float = DEFAULT_UPSTREAM_TIMEOUT,
    upstream_trust: UpstreamTrust | None = None,
    redis_url: str | None = None,
    redis_fail_open: bool = True,
    replicas: int = 1,
) -> Gateway:
    """
    A gateway with its own upstream pool and credential checker, on one
    reactor that is also its clock.  bcrypt checks run on C{threadpool}
    (the reactor's own by default).  With C{redis_url}, rate limits are
    shared through Redis, and the in-process limiter becomes the fallback
    for when Redis cannot answer (at 1/C{replicas} of each limit).
    """
    gateway = Gateway(
        reactor,
        reactor,
        UpstreamPool(reactor, reactor, trust=upstream_trust),
        CredentialChecker(reactor, threadpool or reactor.getThreadPool()),
        trusted_proxies=trusted_proxies,
        upstream_timeout=upstream_timeout,
    )
    gateway.h2_pool = H2UpstreamPool(reactor, reactor, trust=upstream_trust)
    if redis_url is not None:
        gateway.shared_quota = connect_redis(
            redis_url, reactor, gateway.limiter, replicas=replicas, fail_open=redis_fail_open
        )
    return gateway


class GatewayResource(Resource):
    """
    The root of the twisted.web resource tree.  Routing is by Host first,
    which twisted.web's path traversal cannot express, so this single leaf
    hands every request to the L{Gateway}'s host table.
    """

    isLeaf = True

    def __init__(self, gateway: Gateway) -> None:
        super().__init__()
        self.gateway = gateway

    def render(self, request: GatewayRequest) -> int:
        self.gateway.handle(request)
        return NOT_DONE_YET


class GatewaySite(Site):
    """A Site whose connections are L{GatewayChannel}s carrying L{GatewayRequest}s."""

    requestFactory = GatewayRequest
    protocol = GatewayChannel  # type: ignore[assignment]

    def __init__(
        self,
        gateway: Gateway,
        reactor: object,
        timeout: float = 60.0,
        header_deadline: float = GatewayChannel.header_deadline,
        underscores: str = UNDERSCORES_DROP,
        http1_front: str | None = None,
    ) -> None:
        super().__init__(GatewayResource(gateway), reactor=reactor, timeout=timeout)
        self.gateway = gateway
        self.header_deadline = header_deadline
        # What a request field named with "_" gets (--headers-with-underscores).
        self.underscores = underscores
        if http1_front is not None:
            if http1_front not in HTTP1_FRONTS:
                raise ValueError(f"http1_front must be one of {', '.join(HTTP1_FRONTS)}")
            self.http1_front = http1_front

    # Which HTTP/1.1 front a connection gets (--http1-front): "native" is
    # L{NativeChannel}, "twisted" twisted.web's channel hardened
    # (L{GatewayChannel}).  A class attribute so a test can run a module
    # against either front.
    http1_front = DEFAULT_HTTP1_FRONT

    # twisted.web types a Site's channels as its HTTP/2-capable wrapper; this
    # site's protocol is the HTTP/1.1 channel itself.
    def buildProtocol(self, addr: object) -> Any:
        if self.http1_front == "native":
            return NativeChannel(self)
        channel: GatewayChannel = super().buildProtocol(addr)
        channel.header_deadline = self.header_deadline
        return channel

    def _channel(self) -> GatewayChannel:
        channel = GatewayChannel()
        channel.header_deadline = self.header_deadline
        return channel

    def log(self, request: GatewayRequest) -> None:  # type: ignore[override]
        """
        Called by twisted.web once per finished request, whoever answered it
        (an upstream or the gateway itself), and by the request when its
        client left first: the one place that sees every request end.
        """
        if request.logged or not request.dispatched:
            return
        request.logged = True
        gateway = self.gateway
        gateway.requests_open -= 1
        metrics = gateway.metrics
        access_log = gateway.access_log
        if metrics is None and access_log is None:
            return
        now = gateway.clock.seconds()
        duration = now - request.started
        if metrics is not None:
            metrics.request_finished(request, now, duration)
        if access_log is not None:
            access_log.request_finished(request, now, duration)


class MultiplexingGatewaySite(GatewaySite):
    """
    The site behind the HTTPS listener: each connection speaks HTTP/2 or
    HTTP/1.1 as ALPN decides (L{NegotiatingProtocol}): HTTP/2 is our own
    L{tenantgw.http2.server.H2ServerConnection}, HTTP/1.1 the hardened
    L{GatewayChannel}.  The plain listener keeps the channel unwrapped:
    without TLS there is no ALPN, and the wrapper would only add a layer.
    """

    def buildProtocol(self, addr: object) -> NegotiatingProtocol:  # type: ignore[override]
        return NegotiatingProtocol(
            self, self.reactor, lambda: GatewaySite.buildProtocol(self, addr)
        )


class PlainGatewaySite(GatewaySite):
    """
    The site behind the plain HTTP listener: HTTP/1.1, and HTTP/2 for
    clients that open with its connection preface (h2c prior knowledge,
    L{PriorKnowledgeProtocol}).  The h2c Upgrade dance is not offered (see
    L{tenantgw.dataplane.proxy.upgrade_requested}).
    """

    def buildProtocol(self, addr: object) -> PriorKnowledgeProtocol:  # type: ignore[override]
        return PriorKnowledgeProtocol(
            self, self.reactor, lambda: GatewaySite.buildProtocol(self, addr)
        )
