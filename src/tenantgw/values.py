"""
The vocabulary that both a tenant's declared intent (L{tenantgw.config.model})
and the route plans the data plane runs (L{tenantgw.plans}) speak.

It lives in a leaf module so that the data plane can name a CIDR, a token
bucket's figures or a balancing policy without importing the config model:
the data plane only ever sees what compile made of a config, never the
config itself.  What is here reads the same at both ends: figures (a
rate, a cache's age, a probe's interval) and declarations the data plane
applies as written (a redirect, a CORS policy).
"""

from __future__ import annotations

import ipaddress

from attrs import frozen

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

PATH_PREFIX = "Prefix"
PATH_EXACT = "Exact"
PATH_TYPES = (PATH_PREFIX, PATH_EXACT)
# An RE2 expression matched from the start of the path, case-insensitively
# (ingress-nginx use-regex: nginx's "location ~*"); only the Ingress
# translator writes it, after RE2 accepted the pattern.
PATH_REGEX = "RegularExpression"

LB_ROUND_ROBIN = "RoundRobin"
LB_LEAST_REQUEST = "LeastRequest"
LB_COOKIE = "Cookie"
LB_POLICIES = (LB_ROUND_ROBIN, LB_LEAST_REQUEST, LB_COOKIE)


@frozen
class RateLimit:
    """A token bucket: C{requests_per_second} refill, C{burst} capacity."""

    requests_per_second: float
    burst: int


@frozen
class Quota:
    """
    Tenant-wide limits.  L{None} means "no limit of that kind"; ceilings from
    the namespace are applied later, at compile time, because they belong to
    the operator and change independently of the tenant's file.
    """

    rate: RateLimit | None = None
    per_client: RateLimit | None = None
    max_concurrent_requests: int | None = None
    max_request_body_bytes: int | None = None


@frozen
class Redirect:
    scheme: str | None = None
    host: str | None = None
    port: int | None = None
    path: str | None = None
    status_code: int = 302
    # Gateway API RequestRedirect ReplacePrefixMatch: the matched prefix of
    # the request's path is replaced, the rest kept.
    replace_prefix: str | None = None
    # None keeps the request's query string (Gateway API RequestRedirect, the
    # ConfigMap); a string, empty or "?q#f" as the Ingress annotation wrote it,
    # is sent in its place, since ingress-nginx's `return` sends the URL as is.
    query: str | None = None


@frozen
class HealthCheck:
    path: str = "/healthz"
    interval_seconds: float = 5.0
    unhealthy_threshold: int = 3
    healthy_threshold: int = 2


@frozen
class Cache:
    max_age_seconds: int = 60
    max_body_bytes: int = 1048576


@frozen
class Cors:
    """
    CORS answered by the gateway (Gateway API HTTPCORSFilter,
    ingress-nginx enable-cors): preflights never reach the backend.
    C{allow_origins} entries are C{*}, an exact origin or one with a
    C{*.} wildcard host (C{https://*.example.com}).
    """

    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    allow_credentials: bool = False
    max_age_seconds: int = 5
