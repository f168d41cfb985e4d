"""
The data plane: Host -> tenant -> route -> endpoint, for every request.

A snapshot is turned into a tree of handlers once, when it is applied (host
table -> L{TenantHandler} -> L{RouteHandler}), and the tree is swapped in a
single attribute assignment.  A request reads the tree once, at its start,
and keeps that tree for its whole life, so a reload never changes the rules
under a request in flight.  Quota state lives outside the tree, keyed by
namespace, so a reload does not hand anyone a fresh budget.

This module holds that tree and the L{Gateway}, the one place for the state
every request shares (pools, limiter, cache, health, in-flight counts,
metrics).  What happens to one request is in L{tenantgw.dataplane.stages}
(hosts -> tenant -> admission -> forwarding), which reads the tree and the
gateway through the request's L{tenantgw.dataplane.context.RequestContext}.
"""

from __future__ import annotations

import random
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from twisted.web.resource import Resource
from twisted.web.server import Site

from tenantgw.dataplane.access import (
    AddressVerdicts,
    CredentialChecker,
)
from tenantgw.dataplane.balancing import (
    AFFINITY_COOKIE,
    BackendPicker,
    EndpointKey,
    EndpointLoad,
    endpoint_key,
)
from tenantgw.dataplane.cache import (
    ResponseCache,
)
from tenantgw.dataplane.channel import GatewayChannel
from tenantgw.dataplane.context import INTERNAL_ERROR
from tenantgw.dataplane.cors import CorsPolicy
from tenantgw.dataplane.deadlines import Deadlines
from tenantgw.dataplane.health import ActiveChecks, EndpointHealth, ProbeTarget
from tenantgw.dataplane.http1_front import DEFAULT_HTTP1_FRONT, HTTP1_FRONTS, NativeChannel
from tenantgw.dataplane.limits import Bucket, InFlight, RateLimiter
from tenantgw.dataplane.mirror import Mirrors, MirrorTarget
from tenantgw.dataplane.quota_redis import RedisQuota
from tenantgw.dataplane.quota_redis import connect as connect_redis
from tenantgw.dataplane.request import GatewayRequest
from tenantgw.dataplane.responses import respond
from tenantgw.dataplane.stages import hosts
from tenantgw.dataplane.upstream import ResponseHeaders, UpstreamPool
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
from tenantgw.values import IPNetwork, RateLimit, Redirect
from tenantgw.wire.fields import UNDERSCORES_DROP
from tenantgw.wire.paths import (
    DEFAULT_POLICY,
    PathPolicy,
    expand_target,
    replace_prefix,
)

if TYPE_CHECKING:
    from tenantgw.admin.access_log import AccessLog
    from tenantgw.admin.metrics import Metrics

_log = Logger()
DEFAULT_UPSTREAM_TIMEOUT = 60.0
DEFAULT_BODY_TIMEOUT = 15.0


class RouteHandler:
    def __init__(self, tenant: TenantHandler, plan: RoutePlan) -> None:
        # C{tenant} is read here, not kept: its handler holds this one, and a
        # link back would make every replaced tenant a reference cycle.
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
        tenants = snapshot.tenants
        visit = changed_namespaces(snapshot, previous.snapshot)
        for namespace in tenants if visit is None else visit:
            tenant = tenants.get(namespace)
            handler = old_handlers.get(namespace)
            if tenant is None:
                if handler is not None:
                    removed.append(handlers.pop(namespace))
            elif handler is None or handler.compiled is not tenant:
                if handler is not None:
                    removed.append(handler)
                handler = handlers[namespace] = TenantHandler(gateway, tenant)
                changed.append(handler)
        if visit is None and len(handlers) != len(tenants):
            for namespace in [n for n in handlers if n not in tenants]:
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
        """Every request, once its headers are in: through the stages, from the first."""
        hosts.arrive(self, request)

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

    def internal_error(self, request: GatewayRequest, reason: object) -> None:
        _log.failure("request failed inside the gateway", reason)  # type: ignore[arg-type]
        context = request.context
        if context is not None:
            context.refused(INTERNAL_ERROR)
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
    The root a twisted.web L{Site} must have, and nothing more: no request
    ever traverses it.  Routing is by Host first, which twisted.web's path
    traversal cannot express, so a L{GatewayRequest} hands itself to
    L{Gateway.handle} as soon as its headers are in (see
    L{GatewayRequest.headersReceived}), and C{Request.process}, the one
    caller of C{render}, is never run.
    """

    isLeaf = True

    def __init__(self, gateway: Gateway) -> None:
        super().__init__()
        self.gateway = gateway


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
        if metrics is not None or access_log is not None:
            now = gateway.clock.seconds()
            duration = now - request.started
            if metrics is not None:
                metrics.request_finished(request, now, duration)
            if access_log is not None:
                access_log.request_finished(request, now, duration)
        # The request and its context point at each other: unlinked once the
        # request is counted, both go by reference counting rather than by
        # the cyclic collector (tests/test_garbage.py).
        request.context = None


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
