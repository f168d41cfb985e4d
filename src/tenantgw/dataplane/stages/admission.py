"""
The third stage: whether the request may go on now.  The body size limit,
then the tenant's concurrency slot, the route's per-client slot, and the
rate limits (in process, or decided by Redis).  What admission takes it
gives back in L{release}, once, whichever way the request ends.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tenantgw.dataplane import context as reasons
from tenantgw.dataplane.limits import Bucket, Denial
from tenantgw.dataplane.stages import forwarding, refuse

if TYPE_CHECKING:
    from tenantgw.dataplane.context import RequestContext
    from tenantgw.dataplane.quota_redis import Decision

_RETRY_SOON = [(b"retry-after", b"1")]


def admit(context: RequestContext) -> None:
    request = context.request
    route = context.route
    handler = context.tenant
    assert route is not None and handler is not None
    gateway = context.gateway
    max_body = route.max_body
    if max_body is not None:
        declared = request.declared_length
        if declared is not None and declared > max_body:
            request.quota_limit = "body"
            refuse(context, reasons.BODY_TOO_LARGE, 413, close=True)
            return
        if declared is None:
            request.on_body_over_limit(max_body, lambda: body_too_large(context))
            if request.finished:
                return
    namespace = handler.namespace
    if handler.max_concurrent is not None:
        if not gateway.in_flight.try_enter(namespace, handler.max_concurrent):
            request.quota_limit = "tenant"
            refuse(context, reasons.CONCURRENCY, 503, _RETRY_SOON)
            return
        context.entered = True
    buckets: list[Bucket] = []
    if handler.tenant_bucket is not None:
        buckets.append(handler.tenant_bucket)
    if handler.per_client is not None:
        buckets.append(
            Bucket(("client", namespace, request.client_address), handler.per_client, "client")
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
            release(context)
            request.quota_limit = "route-client"
            refuse(context, reasons.CONCURRENCY, 503, _RETRY_SOON)
            return
        request.client_slot = slot
    if buckets:
        shared = gateway.shared_quota
        if shared is not None:
            request.setHeader(b"x-request-id", request.request_id)
            decision = shared.decide(buckets)
            decision.addCallback(lambda decided: after_quota(context, decided))
            decision.addErrback(lambda f: gateway.internal_error(request, f))
            return
        denial = gateway.limiter.try_acquire(buckets)
        if denial is not None:
            release(context)
            request.quota_limit = denial.policy_name
            refuse(context, reasons.QUOTA, 429, rate_policy_headers(denial))
            return
    forwarding.forward(context)


def after_quota(context: RequestContext, decision: Decision) -> None:
    request = context.request
    if request.finished or request.channel is None or decision is not None:
        # Refused, or the client left while Redis decided: no exchange
        # will release the concurrency slot, so it is released here.
        release(context)
    if request.finished or request.channel is None:
        return
    if decision is not None:
        if isinstance(decision, Denial):
            request.quota_limit = decision.policy_name
            refuse(context, reasons.QUOTA, 429, rate_policy_headers(decision))
        else:
            refuse(context, reasons.QUOTA_UNAVAILABLE, 503, _RETRY_SOON)
        return
    forwarding.forward(context)


def release(context: RequestContext) -> None:
    """
    Gives back the tenant's concurrency slot and the route's per-client one
    (limit-connections), each at most once: called when the exchange ends,
    and by every path that answers without one.
    """
    if context.entered:
        context.entered = False
        handler = context.tenant
        assert handler is not None
        context.gateway.in_flight.leave(handler.namespace)
    request = context.request
    slot = request.client_slot
    if slot is not None:
        request.client_slot = None
        context.gateway.in_flight.leave(slot)


def body_too_large(context: RequestContext) -> None:
    """A body without a declared length went past the limit while it arrived."""
    request = context.request
    exchange = request.exchange
    if exchange is not None and not exchange.finished:
        exchange.client_gone()
    context.refused(reasons.BODY_TOO_LARGE)
    if request.startedWriting:
        request.abort()
        return
    request.quota_limit = "body"
    refuse(context, reasons.BODY_TOO_LARGE, 413, close=True)


def rate_policy_headers(denial: Denial) -> list[tuple[bytes, bytes]]:
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
