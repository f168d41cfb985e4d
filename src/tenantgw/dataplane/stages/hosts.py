"""
The first stage: who the request is for.

Everything here is decided before any tenant's rules are read: the request
id, the client address (through --trusted-proxies), the methods no tenant
may use, the Host, the hop-by-hop fields, and then the tenant, its TLS name
and its address rules.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tenantgw.dataplane import context as reasons
from tenantgw.dataplane.access import client_address
from tenantgw.dataplane.context import RequestContext
from tenantgw.dataplane.proxy import upgrade_requested
from tenantgw.dataplane.responses import respond
from tenantgw.dataplane.stages import refuse, tenant
from tenantgw.http1.request_id import SUPPLIED_REQUEST_ID as _REQUEST_ID
from tenantgw.http1.request_id import new_request_id
from tenantgw.wire.fields import HOP_BY_HOP, connection_options

if TYPE_CHECKING:
    from tenantgw.dataplane.gateway import Gateway
    from tenantgw.dataplane.request import GatewayRequest

_HOST = re.compile(rb"\A[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\Z")

# A tunnel to wherever the client names (CONNECT) is not a reverse proxy's
# job, and TRACE makes a backend echo the request, credentials included.
_REFUSED_METHODS: dict[bytes, tuple[int, list[tuple[bytes, bytes]]]] = {
    b"CONNECT": (501, []),
    b"TRACE": (405, [(b"allow", b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")]),
}
# Connection may nominate any field as hop-by-hop, but Host is what the
# gateway routed by and forwards: it is never the client's to remove.
_NEVER_NOMINATED = frozenset({b"host"})


def host_of(request: GatewayRequest) -> str | None:
    """L{host_and_field}'s host name."""
    return host_and_field(request)[0]


def host_and_field(request: GatewayRequest) -> tuple[str | None, bytes]:
    """
    The lower-cased host name the request is for, without port or trailing
    dot; L{None} when it is not a well-formed name (which is a 400: no
    tenant's rules should be consulted for a Host we cannot parse).

    An absolute-form target (RFC 9112 section 3.2.2) names the authority
    itself.  A Host field that names another host is refused rather than
    overridden: routing by one name and forwarding the other is how a
    request chosen by one tenant's rules reaches another tenant's backend.
    The target's authority becomes the one Host that is forwarded.  The
    Host field as it is now (b"" when none) comes along, for the access log.
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
            return None, hosts[0] if hosts else b""
        request.requestHeaders.setRawHeaders(b"host", [raw])
        return host, raw
    if not hosts:
        return None, b""
    return normalize_host(hosts[0]), hosts[0]


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


def arrive(gateway: Gateway, request: GatewayRequest) -> None:
    """A request whose headers are in: its context, then the tenant it is for."""
    context = request.context = RequestContext(request, gateway)
    table = gateway.table  # read once: a reload never changes a request's rules
    if gateway.draining and not request.multiplexed:  # HTTP/2 has no Connection header
        request.gateway_channel.persistent = False
        request.responseHeaders.setRawHeaders(b"connection", [b"close"])
    supplied = request.requestHeaders.getRawHeaders(b"x-request-id")
    request.request_id = (
        supplied[0] if supplied and _REQUEST_ID.match(supplied[0]) else new_request_id()
    )
    peer_host = getattr(request.client, "host", "")  # a UNIX socket peer has none
    trusted = gateway.trusted_proxies
    request.client_address = (
        client_address(peer_host, request.requestHeaders.getRawHeaders(b"x-forwarded-for"), trusted)
        if trusted
        else peer_host
    )
    refused_method = _REFUSED_METHODS.get(request.method)
    if refused_method is not None:
        status, extra_headers = refused_method
        refuse(context, reasons.METHOD, status, extra_headers, close=True)
        return
    host, context.host_field = host_and_field(request)
    if host is None:
        refuse(context, reasons.NO_HOST, 400, close=True)
        return
    context.host = host
    connection = request.requestHeaders.getRawHeaders(b"connection")
    if connection is not None:
        strip_hop_by_hop(request, connection)
    handler = table.lookup(host)
    if handler is None:
        refuse(context, reasons.UNKNOWN_HOST, 404)
        return
    context.tenant = handler
    compiled = handler.compiled
    if request.isSecure():
        server_name = request.server_name
        if server_name is not None and server_name != host:
            # Checked on every request, since a client may reuse one
            # connection for several hosts: one tenant's certificate must
            # never carry another tenant's traffic.
            named = table.lookup(server_name)
            if named is not None and named is not handler:
                refuse(context, reasons.MISDIRECTED, 421)
                return
    elif host in compiled.redirect_hosts:
        gateway.route_to(request, handler.namespace)  # counted for its tenant
        redirect_to_https(gateway, request, host)
        return
    if compiled.access.checks_address and not handler.address_verdicts.allowed(
        request.client_address
    ):
        gateway.route_to(request, handler.namespace)
        refuse(context, reasons.FORBIDDEN, 403)
        return
    tenant.enter(context)


def redirect_to_https(gateway: Gateway, request: GatewayRequest, host: str) -> None:
    port = gateway.https_redirect_port
    authority = host if port == 443 else f"{host}:{port}"
    query_at = request.uri.find(b"?")
    query = request.uri[query_at:] if query_at >= 0 else b""
    location = b"https://" + authority.encode("ascii") + request.path + query
    respond(request, 308, [(b"location", location)])
