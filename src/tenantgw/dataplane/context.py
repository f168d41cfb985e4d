"""
What the stages of one request share, and what is left of it when it ends.

A request passes through the stages of L{tenantgw.dataplane.stages} in
order (hosts -> tenant -> admission -> forwarding).  Each stage reads what
the earlier ones found from one L{RequestContext} and fills in its own part,
instead of threading C{(request, route, host, path, query, entered)}
through every call.  When the request ends, L{outcome_of} turns the context
and the request into one frozen L{Outcome}; the metrics and the access log
both read that record, so they can never disagree on what happened, and it
says why the gateway refused the request when it did.

This module imports nothing of the data plane at run time: the stages, the
gateway and the exchange all import it, never the other way round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from attrs import define

if TYPE_CHECKING:
    from tenantgw.dataplane.cache import CacheFill
    from tenantgw.dataplane.gateway import Gateway, RouteHandler, TenantHandler
    from tenantgw.dataplane.request import GatewayRequest
    from tenantgw.dataplane.upstream import EndpointKey, ResponseHeaders

# Why a request was refused or failed: the fixed vocabulary of the access
# log's "reason" field and of the refusal counter's label.  "" is a request
# that was served (by an upstream, the cache, a redirect or a preflight).
SERVED = ""
NO_HOST = "no_host"  # Host missing or not a host name (400)
UNKNOWN_HOST = "unknown_host"  # no tenant serves the host (404)
MISDIRECTED = "misdirected"  # TLS name of another tenant (421)
METHOD = "method"  # CONNECT, TRACE (501, 405)
BAD_PATH = "bad_path"  # a path or query that does not normalize (400)
NO_ROUTE = "no_route"  # no route of the tenant matches (404)
FORBIDDEN = "forbidden"  # the client address is not allowed (403)
UNAUTHORIZED = "unauthorized"  # missing or wrong credentials (401)
BODY_TOO_LARGE = "body_too_large"  # over the body size limit (413)
CONCURRENCY = "concurrency"  # a concurrency limit is full (503)
QUOTA = "quota"  # a rate limit refused (429)
QUOTA_UNAVAILABLE = "quota_unavailable"  # Redis could not decide, failing closed (503)
NO_ENDPOINT = "no_endpoint"  # no ready endpoint (503)
REFUSED_BACKEND = "refused_backend"  # the share of a refused backend (500)
UPSTREAM_TIMEOUT = "upstream_timeout"  # the upstream did not answer in time (504)
UPSTREAM_ERROR = "upstream_error"  # refused, reset or malformed upstream (502)
CLIENT_GONE = "client_gone"  # the client left before the answer (499)
BODY_TIMEOUT = "body_timeout"  # the request body stalled (408)
INTERNAL_ERROR = "internal_error"  # a bug inside the gateway (500)

REASONS = frozenset(
    {
        SERVED,
        NO_HOST,
        UNKNOWN_HOST,
        MISDIRECTED,
        METHOD,
        BAD_PATH,
        NO_ROUTE,
        FORBIDDEN,
        UNAUTHORIZED,
        BODY_TOO_LARGE,
        CONCURRENCY,
        QUOTA,
        QUOTA_UNAVAILABLE,
        NO_ENDPOINT,
        REFUSED_BACKEND,
        UPSTREAM_TIMEOUT,
        UPSTREAM_ERROR,
        CLIENT_GONE,
        BODY_TIMEOUT,
        INTERNAL_ERROR,
    }
)

_UPSTREAM_REASONS = {
    "timeout": UPSTREAM_TIMEOUT,
    "connect": UPSTREAM_ERROR,
    "reset": UPSTREAM_ERROR,
}


@define(slots=True)
class Forward:
    """What the forwarding stage decided the upstream gets, for the exchange."""

    target: bytes
    host: bytes
    forwarded: list[tuple[bytes, bytes]]
    extra_response_headers: ResponseHeaders
    cache_fill: CacheFill | None = None


@define(slots=True, eq=False, weakref_slot=False)
class RequestContext:
    """
    One request's way through the stages.  Made by the hosts stage; each
    later stage fills in what it decided (C{eq=False}: two requests are
    never the same one, and the record is compared by identity).
    """

    request: GatewayRequest
    gateway: Gateway
    host: str = ""
    # The Host field as received (b"" when none), for the access log.
    host_field: bytes = b""
    tenant: TenantHandler | None = None
    route: RouteHandler | None = None
    # The normalized path that is forwarded, and the query ("" or "?...").
    path: bytes = b""
    query: bytes = b""
    # Whether the tenant's concurrency slot is held (released when it ends).
    entered: bool = False
    endpoint: EndpointKey | None = None
    # Why the gateway refused it (one of REASONS; "" while nothing refused).
    reason: str = SERVED
    cache_hit: bool = False
    outcome: Outcome | None = None

    def refused(self, reason: str) -> None:
        """Records why, once: the first refusal is the one that answered."""
        if not self.reason:
            self.reason = reason


class Outcome(NamedTuple):
    """
    One request, as it ended: what the metrics and the access log record.

    Immutable, as an attrs frozen class would be, but a named tuple: it is
    made for every request, and under callgrind a frozen slotted attrs
    class with these 18 fields costs about 21,000 instructions to build
    (each field goes through C{object.__setattr__}), a named tuple about
    4,100 (see docs/benchmarks.md, issue 15).
    """

    tenant: str
    route: str
    host: bytes
    method: bytes
    path: bytes
    status: int
    reason: str
    endpoint: str
    client: str
    request_id: bytes
    bytes_sent: int
    body_received: int
    duration: float
    # Seconds from arrival to the upstream's response head; None: no upstream answered.
    upstream_latency: float | None
    upstream_error: str
    quota_limit: str
    cache_hit: bool
    protocol: str


def outcome_of(request: GatewayRequest, duration: float) -> Outcome:
    """
    The request's L{Outcome}, made on the first call and kept on its context,
    so the metrics and the access log (each told of the end separately) read
    the one record.
    """
    context: RequestContext | None = request.context
    if context is not None and context.outcome is not None:
        return context.outcome
    code = request.code
    reason = context.reason if context is not None else SERVED
    error = request.upstream_error
    if not reason:
        if code == 499:
            reason = CLIENT_GONE
        elif error:
            reason = _UPSTREAM_REASONS.get(error, UPSTREAM_ERROR)
        elif code == 408:
            reason = BODY_TIMEOUT
    if context is not None:
        host = context.host_field
    else:
        fields = request.requestHeaders.getRawHeaders(b"host")
        host = fields[0] if fields else b""
    answered = request.upstream_answered_at
    outcome = Outcome(  # positional: keywords cost more, for every request
        request.tenant_namespace,
        request.route_name,
        host,
        request.method,
        request.path,
        code,
        reason,
        request.upstream,
        request.client_address,
        request.request_id,
        request.sentLength,
        request.body_received,
        duration,
        answered - request.started if answered else None,
        error,
        request.quota_limit,
        context.cache_hit if context is not None else False,
        "h2" if request.multiplexed else "h1",
    )
    if context is not None:
        context.outcome = outcome
    return outcome
