"""
The last stage: where an admitted request goes, and how.  Each concern is
one function, in the order they apply: the route's redirect, the share of a
refused backend, the response cache, the endpoint pick (with affinity), the
request edits and the X-Forwarded-* set, the mirrors, and the exchange.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tenantgw.dataplane import context as reasons
from tenantgw.dataplane.balancing import affinity_token, cookie_value, endpoint_key
from tenantgw.dataplane.cache import CachedResponse, CacheFill, request_may_use_cache
from tenantgw.dataplane.context import Forward
from tenantgw.dataplane.mirror import MIRROR_HEADER
from tenantgw.dataplane.proxy import Exchange
from tenantgw.dataplane.responses import respond
from tenantgw.dataplane.stages import admission, refuse
from tenantgw.wire.paths import replace_prefix

if TYPE_CHECKING:
    from tenantgw.dataplane.context import RequestContext
    from tenantgw.dataplane.gateway import RouteHandler
    from tenantgw.dataplane.upstream import ResponseHeaders
    from tenantgw.values import Redirect

_RETRY_SOON = [(b"retry-after", b"1")]


def forward(context: RequestContext) -> None:
    route = context.route
    assert route is not None
    if route.redirect is not None:
        redirect(context, route.redirect, route.matcher.path)
        admission.release(context)
        return
    share = route.refused_share
    if share and (share >= 1.0 or context.gateway.chance() < share):
        refuse(context, reasons.REFUSED_BACKEND, 500)
        admission.release(context)
        return
    cache_fill: CacheFill | None = None
    extra: ResponseHeaders = []
    if route.cache is not None and request_may_use_cache(b"GET", context.request.requestHeaders):
        looked = look_up_cache(context, route)
        if looked is None:
            admission.release(context)
            return
        cache_fill, extra = looked
    sticky_cookie = pick_endpoint(context, route)
    if sticky_cookie is None:
        refuse(context, reasons.NO_ENDPOINT, 503, _RETRY_SOON)
        admission.release(context)
        return
    cors = context.request.cors_headers
    if sticky_cookie or cors:
        extra = sticky_cookie + extra + cors
    start_exchange(context, route, edit_request(context, route, extra, cache_fill))


def redirect(context: RequestContext, redirect: Redirect, matched: bytes) -> None:
    """A route that answers with a redirect, built from the request's own path."""
    request = context.request
    path = context.path
    query = context.query
    scheme = redirect.scheme or ("https" if request.isSecure() else "http")
    target_host = redirect.host or context.host
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


def look_up_cache(
    context: RequestContext, route: RouteHandler
) -> tuple[CacheFill | None, ResponseHeaders] | None:
    """
    None when the cache answered; otherwise what fills it (only a GET fills;
    HEAD may be answered from what a GET stored) and the X-Cache header.
    """
    request = context.request
    cache = route.cache
    assert cache is not None
    handler = context.tenant
    assert handler is not None
    shared = context.gateway.cache
    tenant_cache = shared.for_tenant(handler.namespace)
    base = (route.name, context.host.encode("ascii"), context.path + context.query)
    hit = tenant_cache.get(base, request.requestHeaders, shared.clock.seconds())
    if hit is not None:
        context.cache_hit = True
        serve_cached(context, hit)
        return None
    fill = None
    if request.method == b"GET":
        fill = CacheFill(
            tenant_cache,
            base,
            request.requestHeaders.copy(),  # before the route edits them
            cache.max_body_bytes,
            cache.max_age_seconds,
            shared.clock,
        )
    return fill, [(b"x-cache", b"MISS")]


def serve_cached(context: RequestContext, hit: CachedResponse) -> None:
    request = context.request
    age = int(max(0.0, context.gateway.cache.clock.seconds() - hit.stored_at))
    headers = [
        *hit.headers,
        (b"x-cache", b"HIT"),
        (b"age", b"%d" % age),
        (b"x-request-id", request.request_id),
    ]
    request.start_response(hit.code, hit.reason, headers)
    request.write(hit.body)
    request.finish()


def pick_endpoint(context: RequestContext, route: RouteHandler) -> ResponseHeaders | None:
    """
    Sets the context's endpoint; the affinity cookie to set (empty when
    none), or None when no endpoint is ready.
    """
    request = context.request
    picker = route.picker
    sticky = picker.sticky
    affinity = (
        cookie_value(request.requestHeaders.getRawHeaders(b"cookie"), route.affinity_cookie)
        if sticky
        else None
    )
    picked = picker.pick(affinity)
    if picked is None:
        return None
    backend, endpoint = picked
    key = context.endpoint = endpoint_key(backend, endpoint)
    request.upstream = f"{endpoint.address}:{endpoint.port}"
    if sticky:
        token = affinity_token(key)
        if token != affinity:
            return [(b"set-cookie", route.affinity_cookie + b"=" + token + b"; Path=/; HttpOnly")]
    return []


def edit_request(
    context: RequestContext,
    route: RouteHandler,
    extra: ResponseHeaders,
    cache_fill: CacheFill | None,
) -> Forward:
    """
    The route's header edits on the request, credentials removed, and the
    X-Forwarded-* set ingress-nginx sends on every route: apps moved off it
    read them, and a client's own values of these names never reach any
    upstream (proxy._NOT_COPIED).  X-Real-IP is the client address, so it
    follows --trusted-proxies as X-Forwarded-For does.
    """
    request = context.request
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
    original_host = headers.getRawHeaders(b"host", [context.host.encode("ascii")])[0]
    previous_for = headers.getRawHeaders(b"x-forwarded-for")
    client = request.client_address.encode("ascii")
    scheme = b"https" if request.isSecure() else b"http"
    forwarded = [
        (b"X-Forwarded-For", b", ".join([*previous_for, client]) if previous_for else client),
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
    return Forward(
        route.target_for(context.path, context.query),
        route.rewrite_host or original_host,
        forwarded,
        extra,
        cache_fill,
    )


def mirror(context: RequestContext, route: RouteHandler, forward: Forward) -> None:
    """
    Copies of a bodiless request to the route's mirrors.  A copy is never
    mirrored again: a mirror that leads back here (directly or through
    other gateways) must not multiply.
    """
    request = context.request
    if request.declared_length != 0 or request.requestHeaders.hasHeader(MIRROR_HEADER):
        return
    context.gateway.mirrors.send(
        route.mirrors,
        request.method,
        forward.target,
        [
            *((n, v) for n, v in request.requestHeaders.getAllRawHeaders() if n.lower() != b"host"),
            (b"Host", [forward.host]),
            (MIRROR_HEADER, [b"1"]),
            *((n, [v]) for n, v in forward.forwarded),
        ],
    )


def start_exchange(context: RequestContext, route: RouteHandler, forward: Forward) -> None:
    if route.mirrors:
        mirror(context, route, forward)
    Exchange(context, forward, admission.release).start()
