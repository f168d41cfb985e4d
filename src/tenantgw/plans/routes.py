"""
One route's plan, and the backends and access rules it points at.

Everything a request compares is bytes here: header names lower-cased and
encoded, paths encoded with a prefix's trailing slash removed, cookie names
ready to search for.  The data plane reads these fields; it never decodes
or re-derives them per request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

from tenantgw.values import LB_ROUND_ROBIN, Cache, Cors, HealthCheck, IPNetwork, RateLimit, Redirect


@frozen
class Endpoint:
    """One ready address of a Service, as listed by its EndpointSlices."""

    address: str
    port: int


@frozen
class BackendPlan:
    service: str
    port: int  # the Service port, for logs and the upstream Host fallback
    weight: int
    endpoints: tuple[Endpoint, ...]
    # For a TLS port (named "https", or appProtocol https): the name the
    # upstream's certificate must carry, the Service's DNS name.
    tls_name: str | None = None
    # What the backend speaks (see tenantgw.compile.compiler.backend_protocol):
    # "h1" (HTTP/1.1), "h2c" (HTTP/2 cleartext) or "tls" (TLS, HTTP/2 when
    # the upstream accepts h2 by ALPN, HTTP/1.1 otherwise).
    protocol: str = "h1"


@frozen
class AccessPlan:
    """
    Access rules with their Secrets resolved.  API keys are kept only as
    SHA-256 digests: a set lookup on a digest leaks nothing about the key's
    bytes through timing, and the raw keys never sit in the plan.
    """

    allow_cidrs: tuple[IPNetwork, ...] = ()
    deny_cidrs: tuple[IPNetwork, ...] = ()
    basic_auth_realm: str | None = None
    basic_auth_users: Mapping[str, bytes] = field(factory=dict)  # user -> bcrypt hash
    api_key_digests: frozenset[bytes] | None = None

    @property
    def checks_address(self) -> bool:
        return bool(self.allow_cidrs or self.deny_cidrs)

    @property
    def checks_credentials(self) -> bool:
        return self.basic_auth_realm is not None or self.api_key_digests is not None


def digest_api_key(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


@frozen
class MatchPlan:
    """
    One route's conditions, pre-digested into bytes so that the hot path
    compares bytes to bytes without decoding anything.
    """

    exact: bool
    path: bytes  # for prefixes, without trailing slash ("/" becomes "")
    methods: frozenset[bytes]
    headers: tuple[tuple[bytes, bytes], ...]
    query_params: tuple[tuple[str, str], ...]
    # RE2 only (linear time whatever the tenant wrote): a regular-expression
    # path, header patterns, and cookie values to match.
    path_regex: Any | None = field(default=None, eq=False)
    header_patterns: tuple[tuple[bytes, Any], ...] = field(default=(), eq=False)
    cookies: tuple[tuple[bytes, bytes], ...] = ()


@frozen
class HeaderEdits:
    """
    Header edits in the order they apply: remove, set (replacing every
    value), add.  C{replaced} is every name whose old values go, for
    editing a response's header list in one pass.
    """

    remove: tuple[bytes, ...] = ()
    set: tuple[tuple[bytes, bytes], ...] = ()
    add: tuple[tuple[bytes, bytes], ...] = ()

    @property
    def replaced(self) -> frozenset[bytes]:
        return frozenset(self.remove) | {name for name, _ in self.set}


@frozen
class RoutePlan:
    name: str
    match: MatchPlan
    backends: tuple[BackendPlan, ...]
    access: tuple[AccessPlan, ...]  # tenant's, then the route's: every one must pass
    # Where the route was declared, as a field path: "routes[2]" in
    # tenant.yaml, "HTTPRoute web spec.rules[0]" for Gateway API.
    source: str = ""
    # The path as declared, for /api/tenants and the dashboard.
    path: str = "/"
    path_type: str = "Prefix"
    rate: RateLimit | None = None
    # Gateway API RequestMirror: (backend, percent of requests copied).
    mirrors: tuple[tuple[BackendPlan, float], ...] = ()
    balancing: str = LB_ROUND_ROBIN
    affinity_cookie: bytes | None = None  # None: the gateway's own cookie name
    retry_attempts: int = 0
    # One attempt's deadline (Gateway API backendRequest, else the route's
    # timeout); None: the gateway's --upstream-timeout.
    attempt_timeout: float | None = None
    redirect: Redirect | None = None
    rewrite_prefix: bytes | None = None
    rewrite_full_path: bytes | None = None
    rewrite_regex_target: bytes | None = None  # $1..$9 from the path expression
    rewrite_host: bytes | None = None
    request_edits: HeaderEdits | None = None
    response_edits: HeaderEdits | None = None
    cors: Cors | None = None
    # Share of requests answered 500 for backends refused at compile time
    # (Gateway API: invalid backendRefs keep their weight).
    refused_share: float = 0.0
    cache: Cache | None = None
    health_check: HealthCheck | None = None
    # ingress-nginx proxy-body-size, limit-rps and limit-connections: on
    # this route, within the tenant's own limits.
    max_request_body_bytes: int | None = None
    per_client_rate: RateLimit | None = None
    max_client_concurrent: int | None = None
