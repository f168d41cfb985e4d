"""
The routing snapshot: everything the data plane needs, resolved and frozen.

A snapshot is built by one pure function (L{tenantgw.compile.compiler}) from
the watched objects and is then only ever read.  The data plane swaps a whole
snapshot in one attribute assignment, so a request sees either the old world
or the new one, never half of each.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

from tenantgw.config.model import IPNetwork, Quota, RateLimit, Route, TenantSpec
from tenantgw.tls.certificates import ServingCertificate

STATE_ACCEPTED = "Accepted"
STATE_CLAMPED = "Clamped"
STATE_REJECTED = "Rejected"
STATE_HOST_CONFLICT = "HostConflict"
STATE_CERTIFICATE_ERROR = "CertificateError"

# The host key of a route that names no host and sits on a listener that
# names none (Gateway API): every host no other tenant serves.
ANY_HOST = "*"


@frozen
class Endpoint:
    """One ready address of a Service, as listed by its EndpointSlices."""

    address: str
    port: int


@frozen
class CompiledBackend:
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
class CompiledAccess:
    """
    Access rules with their Secrets resolved.  API keys are kept only as
    SHA-256 digests: a set lookup on a digest leaks nothing about the key's
    bytes through timing, and the raw keys never sit in the snapshot.
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
class CompiledRoute:
    route: Route
    backends: tuple[CompiledBackend, ...]
    access: tuple[CompiledAccess, ...]  # tenant's, then the route's: every one must pass
    rate: RateLimit | None = None
    # Gateway API RequestMirror: (backend, percent of requests copied).
    mirrors: tuple[tuple[CompiledBackend, float], ...] = ()
    # Where the route was declared, as a field path: "routes[2]" in
    # tenant.yaml, "HTTPRoute web spec.rules[0]" for Gateway API.
    source: str = ""

    @property
    def name(self) -> str:
        return self.route.name


@frozen
class CompiledTenant:
    namespace: str
    hosts: tuple[str, ...]
    spec: TenantSpec
    quota: Quota  # after namespace ceilings
    routes: tuple[CompiledRoute, ...]  # in match precedence order
    access: CompiledAccess
    generation: str  # identifies the config that serves, for status and metrics
    # Hosts whose certificate is valid and covers them: served over HTTPS
    # with the tenant's own certificate, and redirected there from HTTP.
    https_hosts: frozenset[str] = frozenset()
    # Hosts whose plain-HTTP requests get a 308 to HTTPS (tenant.yaml
    # tls.httpRedirect; Ingress ssl-redirect / force-ssl-redirect).
    redirect_hosts: frozenset[str] = frozenset()
    # (scheme, host key) -> routes, when the tenant's hosts do not all serve
    # the same routes (Gateway API routes name their hostnames and
    # listeners).  Empty: every host and scheme serves C{routes}.
    host_routes: Mapping[tuple[str, str], tuple[CompiledRoute, ...]] = field(factory=dict)


@frozen
class TenantStatus:
    """What a tenant (and the operator) should know about one namespace."""

    namespace: str
    state: str
    messages: tuple[str, ...] = ()
    config_map: str | None = None
    serving: bool = False
    hosts: tuple[str, ...] = ()


@frozen
class Snapshot:
    """
    Host lookup tables plus per-tenant status.  Wildcards are stored as
    suffixes (``*.a.b`` -> ``.a.b``) sorted longest first, which makes "a longer
    wildcard beats a shorter one" fall out of a linear scan.
    """

    tenants: Mapping[str, CompiledTenant] = field(factory=dict)
    exact_hosts: Mapping[str, CompiledTenant] = field(factory=dict)
    wildcard_hosts: tuple[tuple[str, CompiledTenant], ...] = ()
    statuses: Mapping[str, TenantStatus] = field(factory=dict)
    # The specs serving now, kept so that a later rejected update can fall
    # back to them: this is the "last good config" memory, carried from one
    # compile to the next instead of being hidden state in a source.
    last_good: Mapping[str, tuple[str, TenantSpec]] = field(factory=dict)
    # Derived hosts of namespaces that serve nothing right now: they must not
    # be caught by another tenant's wildcard while their owner is down.
    reserved_hosts: frozenset[str] = frozenset()
    # Host (exact, or "*.suffix") -> the tenant certificate serving it by SNI.
    certificates: Mapping[str, ServingCertificate] = field(factory=dict)
    # From --default-cert-secret, when given and usable; else the listener's
    # own default (--default-cert, or self-signed) serves.
    default_certificate: ServingCertificate | None = None
    default_certificate_problem: str | None = None
    # Gateway API HTTPS listeners' certificates (the operator's), by listener
    # hostname (exact or "*.suffix"): tried after the tenants' own.
    listener_certificates: Mapping[str, ServingCertificate] = field(factory=dict)
    # The tenant serving every host nobody else serves (a Gateway API route
    # without hostnames on a listener without one), if any.
    catch_all: CompiledTenant | None = None
    # Gateway API objects' statuses (GatewayClass, Gateway, HTTPRoute), for
    # the status writer, /api/tenants and tenantgw check.
    object_statuses: tuple[Any, ...] = ()
    # Last good versions of Gateway API routes, by "namespace/name": a
    # refused edit keeps the previous version serving.
    last_good_objects: Mapping[str, Mapping[str, Any]] = field(factory=dict)

    def certificate_for(self, server_name: str) -> ServingCertificate | None:
        """
        Exact name first, then the one-label wildcard above it (TLS rules);
        but a name some tenant serves exactly never gets another tenant's
        wildcard certificate.
        """
        certificate = self.certificates.get(server_name)
        if certificate is None and server_name not in self.exact_hosts:
            _, dot, parent = server_name.partition(".")
            if dot:
                certificate = self.certificates.get("*." + parent)
        if certificate is None and self.listener_certificates:
            # The operator's own certificate covers whatever its listener
            # serves, whichever tenant owns the name.
            listener = self.listener_certificates
            certificate = listener.get(server_name)
            labels = server_name.split(".")
            for i in range(1, len(labels)):
                if certificate is not None:
                    break
                candidate = listener.get("*." + ".".join(labels[i:]))
                if candidate is not None and candidate.covers(server_name):
                    certificate = candidate
        return certificate

    def tenant_for_host(self, host: str) -> CompiledTenant | None:
        tenant = self.exact_hosts.get(host)
        if tenant is not None:
            return tenant
        if host in self.reserved_hosts:
            return None
        for suffix, candidate in self.wildcard_hosts:
            if host.endswith(suffix) and len(host) > len(suffix):
                return candidate
        return self.catch_all


EMPTY_SNAPSHOT = Snapshot()
