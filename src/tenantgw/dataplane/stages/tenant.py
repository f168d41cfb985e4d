"""
The second stage: which of the tenant's routes, and whether this client may
use it (its address, CORS, credentials).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred

from tenantgw.dataplane import context as reasons
from tenantgw.dataplane.cors import CorsPolicy, is_preflight
from tenantgw.dataplane.matching import first_match
from tenantgw.dataplane.responses import respond_empty
from tenantgw.dataplane.stages import admission, refuse
from tenantgw.wire.paths import normalize_path, valid_query

if TYPE_CHECKING:
    from tenantgw.dataplane.context import RequestContext
    from tenantgw.dataplane.gateway import RouteHandler


def enter(context: RequestContext) -> None:
    """The request now counts for its tenant; its route is found and checked."""
    request = context.request
    handler = context.tenant
    assert handler is not None
    gateway = context.gateway
    gateway.route_to(request, handler.namespace)
    uri = request.uri
    query_at = uri.find(b"?")
    query = uri[query_at:] if query_at >= 0 else b""
    normalized = normalize_path(request.path, gateway.path_policy)
    if normalized is None or (query and not valid_query(query[1:])):
        refuse(context, reasons.BAD_PATH, 400, close=True)
        return
    # The normalized path is the one forwarded; routes are compared with
    # it less its path parameters (see tenantgw.wire.paths).
    context.path = normalized.forward
    context.query = query
    route: RouteHandler | None = first_match(
        handler.routes_for(request, context.host),
        request.method,
        normalized.match,
        request.requestHeaders.getRawHeaders,
        query[1:] if query else None,
    )
    if route is None:
        refuse(context, reasons.NO_ROUTE, 404)
        return
    context.route = route
    request.route_name = route.name
    if route.checks_address and not route.address_verdicts.allowed(request.client_address):
        refuse(context, reasons.FORBIDDEN, 403)
        return
    if route.cors is not None and answered_cors(context, route.cors):
        return
    if route.checks_credentials:
        verdict = gateway.check_credentials(request, route.access)
        if isinstance(verdict, Deferred):
            request.setHeader(b"x-request-id", request.request_id)
            verdict.addCallback(lambda ok: after_credentials(context, ok))
            verdict.addErrback(lambda f: gateway.internal_error(request, f))
            return
        if not verdict:
            unauthorized(context)
            return
    admission.admit(context)


def answered_cors(context: RequestContext, cors: CorsPolicy) -> bool:
    """
    A preflight is answered here, before credentials are asked for
    (browsers send none with it); an actual request's response gets the
    CORS headers added.
    """
    request = context.request
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


def after_credentials(context: RequestContext, ok: bool) -> None:
    request = context.request
    if request.finished or request.channel is None:
        return
    if not ok:
        unauthorized(context)
        return
    admission.admit(context)


def unauthorized(context: RequestContext) -> None:
    route = context.route
    assert route is not None
    realms = [a.basic_auth_realm for a in route.access if a.basic_auth_realm is not None]
    headers = []
    if realms:
        headers.append(
            (b"www-authenticate", b'Basic realm="%s", charset="UTF-8"' % realms[-1].encode())
        )
    refuse(context, reasons.UNAUTHORIZED, 401, headers)
