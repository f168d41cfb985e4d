"""
The tenant's declared intent, as immutable values.

Everything a tenant writes in ``tenant.yaml`` lands in these classes after
validation (see L{tenantgw.config.parse}).  They are frozen so that a snapshot
built from them can be shared by every request in flight without locks, and
so that "did anything change?" is a plain equality test.

Field names follow Python style; the YAML spelling is the contract's
(``requestsPerSecond`` -> ``requests_per_second``).  Header names are kept
lower-cased here because every comparison on them is case-insensitive.
"""

from __future__ import annotations

from attrs import field, frozen

# Re-exported: the parsers and translators read one module for everything
# a config can say; the data plane reads tenantgw.values directly.
from tenantgw.values import (
    LB_COOKIE as LB_COOKIE,
)
from tenantgw.values import (
    LB_LEAST_REQUEST as LB_LEAST_REQUEST,
)
from tenantgw.values import (
    LB_POLICIES as LB_POLICIES,
)
from tenantgw.values import (
    LB_ROUND_ROBIN as LB_ROUND_ROBIN,
)
from tenantgw.values import (
    PATH_EXACT as PATH_EXACT,
)
from tenantgw.values import (
    PATH_PREFIX as PATH_PREFIX,
)
from tenantgw.values import (
    PATH_REGEX as PATH_REGEX,
)
from tenantgw.values import (
    PATH_TYPES as PATH_TYPES,
)
from tenantgw.values import (
    Cache as Cache,
)
from tenantgw.values import (
    Cors as Cors,
)
from tenantgw.values import (
    HealthCheck as HealthCheck,
)
from tenantgw.values import (
    IPNetwork as IPNetwork,
)
from tenantgw.values import (
    Quota as Quota,
)
from tenantgw.values import (
    RateLimit as RateLimit,
)
from tenantgw.values import (
    Redirect as Redirect,
)

REDIRECT_STATUSES = (301, 302, 303, 307, 308)


@frozen
class BasicAuthRef:
    secret_name: str
    realm: str = "tenantgw"


@frozen
class SecretRef:
    secret_name: str


@frozen
class Access:
    """
    Who may call.  Empty C{allow_cidrs} admits every address; a deny always
    wins.  Credentials are references: the secrets themselves are resolved
    at compile time inside the tenant's own namespace only.
    """

    allow_cidrs: tuple[IPNetwork, ...] = ()
    deny_cidrs: tuple[IPNetwork, ...] = ()
    basic_auth: BasicAuthRef | None = None
    api_keys: SecretRef | None = None


@frozen
class HeaderMatch:
    name: str  # lower-cased
    value: str
    # An RE2 pattern searched in the value (ingress-nginx
    # canary-by-header-pattern) instead of an exact value.
    regex: bool = False


@frozen
class CookieMatch:
    """A request cookie with this exact value (ingress-nginx canary-by-cookie)."""

    name: str
    value: str


@frozen
class QueryParamMatch:
    name: str  # case-sensitive, as in Gateway API
    value: str


@frozen
class RouteMatch:
    path: str = "/"
    path_type: str = PATH_PREFIX
    methods: tuple[str, ...] = ()
    headers: tuple[HeaderMatch, ...] = ()
    query_params: tuple[QueryParamMatch, ...] = ()
    cookies: tuple[CookieMatch, ...] = ()
    # What precedence counts instead of the path's length (a GRPCRoute
    # method match: its service's characters first, then its method's).
    precedence_length: int | None = None


@frozen
class BackendRef:
    """A Service in the tenant's own namespace; C{port} is a number or a name."""

    service: str
    port: int | str
    weight: int = 1
    # ingress-nginx backend-protocol (HTTP, HTTPS, GRPC, GRPCS, H2C): overrides
    # what the Service port says.
    protocol: str | None = None
    # Another namespace's Service: only a Gateway API backendRef can name one,
    # and only with a ReferenceGrant in that namespace (contract section 10).
    # tenant.yaml never sets it.
    namespace: str | None = None


@frozen
class Rewrite:
    replace_prefix: str | None = None
    host: str | None = None
    # Gateway API URLRewrite ReplaceFullPath: the whole path is replaced.
    full_path: str | None = None
    # ingress-nginx rewrite-target on a regular-expression path: a template
    # where $1..$9 are the path expression's groups.
    regex_target: str | None = None


@frozen
class HeaderModifier:
    """
    Header edits applied in the order remove, set, add, so that a header can
    be both cleared and given a value in one declaration.
    """

    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return not (self.set or self.add or self.remove)


@frozen
class Retries:
    attempts: int = 0


@frozen
class LoadBalancer:
    policy: str = LB_ROUND_ROBIN
    # The affinity cookie's name for LB_COOKIE (ingress-nginx
    # session-cookie-name); None: the gateway's own.
    cookie_name: str | None = None


@frozen
class Mirror:
    """
    A copy of each request (or of C{percent} of them) sent to another
    backend; its answer is thrown away, so a slow or failing mirror never
    changes what the client gets.
    """

    backend: BackendRef
    percent: float = 100.0


@frozen
class Route:
    name: str
    match: RouteMatch = field(factory=RouteMatch)
    backends: tuple[BackendRef, ...] = ()
    rewrite: Rewrite | None = None
    request_headers: HeaderModifier = field(factory=HeaderModifier)
    response_headers: HeaderModifier = field(factory=HeaderModifier)
    redirect: Redirect | None = None
    timeout_seconds: float | None = None
    retries: Retries = field(factory=Retries)
    load_balancer: LoadBalancer = field(factory=LoadBalancer)
    health_check: HealthCheck | None = None
    access: Access | None = None
    quota: RateLimit | None = None
    cache: Cache | None = None
    mirrors: tuple[Mirror, ...] = ()
    cors: Cors | None = None
    # Gateway API timeouts.backendRequest: one attempt's deadline, within
    # the whole request's C{timeout_seconds}.
    backend_timeout_seconds: float | None = None
    # Weight of the backends that were refused (not found, not permitted):
    # that share of requests is answered 500, as Gateway API requires,
    # instead of silently moving to the valid backends.
    refused_backend_weight: int = 0
    # ingress-nginx proxy-body-size: within the tenant's own limit.
    max_request_body_bytes: int | None = None
    # ingress-nginx limit-rps / limit-connections: per client address, on
    # this route (the tenant's own limits apply as well).
    per_client_rate: RateLimit | None = None
    max_client_concurrent: int | None = None


@frozen
class TLS:
    secret_name: str
    http_redirect: bool = True


@frozen
class TenantSpec:
    """One tenant's whole ``tenant.yaml``, validated."""

    hosts: tuple[str, ...] = ()
    tls: TLS | None = None
    quota: Quota = field(factory=Quota)
    access: Access = field(factory=Access)
    routes: tuple[Route, ...] = ()


@frozen
class FieldError:
    """
    One reason a tenant file was refused.  C{path} uses the contract's
    spelling (``routes[2].backends[0].port``) so that a tenant can find the
    line in their own file without reading ours.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message
