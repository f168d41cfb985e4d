"""
The ingress-nginx annotations tenantgw serves, with ingress-nginx's parsing.

Every annotation under ``nginx.ingress.kubernetes.io/`` or ``tenantgw.io/``
gets one of three outcomes, each reported (in status, and by ``tenantgw
migrate``):

- **served**: parsed as ingress-nginx parses it (nginx size and time units,
  comma lists, Go's boolean spellings) and mapped onto a tenant-model
  feature;
- **refused**: anything that would be code or configuration text
  (``*-snippet``, ``server-alias``, ``auth-url`` and the other external-auth
  annotations): the whole Ingress is Rejected with the annotation named;
- **unknown**: served without it, with a warning listing it.

A malformed value of a served annotation rejects the Ingress too, naming
the annotation: serving without a limit the tenant asked for would be worse
than not serving.  Where both prefixes set one annotation, ``tenantgw.io/``
wins.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from attrs import frozen

PREFIXES = ("tenantgw.io/", "nginx.ingress.kubernetes.io/")

# Served: name -> what it becomes (for tenantgw migrate and the docs).
SERVED: Mapping[str, str] = {
    "rewrite-target": "rewrite of the path (with use-regex: $1..$9 from the path expression)",
    "use-regex": "paths are RE2 expressions, matched from the start, case-insensitively",
    "ssl-redirect": "HTTP -> HTTPS redirect (308) for the Ingress's TLS hosts (default true)",
    "force-ssl-redirect": "HTTP -> HTTPS redirect (308) even without TLS on the host",
    "proxy-body-size": "route body limit (413), within the tenant's own",
    "proxy-connect-timeout": "upstream connect timeout (folded into the route timeout)",
    "proxy-read-timeout": "route timeout (504)",
    "proxy-send-timeout": "upstream send timeout (folded into the route timeout)",
    "limit-rps": "per-client rate on the route (429), burst rps x limit-burst-multiplier",
    "limit-burst-multiplier": "burst multiplier for limit-rps (default 5)",
    "limit-connections": "per-client concurrent requests on the route (503)",
    "whitelist-source-range": "route access: allowed CIDRs",
    "denylist-source-range": "route access: denied CIDRs",
    "auth-type": "route access: basic auth (with auth-secret, auth-realm)",
    "auth-secret": "htpasswd Secret for basic auth (same namespace; key 'auth')",
    "auth-secret-type": "auth-file (the only type served)",
    "auth-realm": "basic auth realm",
    "canary": "canary Ingress, merged into its primary",
    "canary-weight": "canary share of requests",
    "canary-weight-total": "total the canary weight is out of (default 100)",
    "canary-by-header": "header routing to the canary ('always' / 'never')",
    "canary-by-header-value": "header value routing to the canary",
    "canary-by-header-pattern": "header RE2 pattern routing to the canary",
    "canary-by-cookie": "cookie routing to the canary ('always' / 'never')",
    "affinity": "cookie session affinity",
    "session-cookie-name": "affinity cookie name",
    "backend-protocol": "upstream protocol (HTTP, HTTPS, GRPC, GRPCS, H2C)",
    "enable-cors": "CORS answered at the gateway",
    "cors-allow-origin": "CORS allowed origins",
    "cors-allow-methods": "CORS allowed methods",
    "cors-allow-headers": "CORS allowed headers",
    "cors-expose-headers": "CORS exposed headers",
    "cors-allow-credentials": "CORS credentials",
    "cors-max-age": "CORS preflight max age",
    "app-root": "redirect (302) of / to the application root",
    "permanent-redirect": "redirect of every request (301, or permanent-redirect-code)",
    "permanent-redirect-code": "status of permanent-redirect",
    "temporal-redirect": "redirect of every request (302)",
    "upstream-vhost": "upstream Host header",
}

# Anything that would be configuration text or code in nginx, or send
# requests somewhere the tenant picks outside the route model.
_REFUSED_EXACT = frozenset(
    {
        "server-alias",
        "auth-url",
        "auth-signin",
        "auth-snippet",
        "auth-response-headers",
        "auth-request-redirect",
        "auth-proxy-set-headers",
        "auth-cache-key",
        "auth-method",
        "auth-keepalive",
        "global-auth-url",
        "mirror-target",
        "mirror-host",
        "custom-headers",
        "lua-resty-waf",
        "modsecurity-transaction-id",
    }
)

NGINX_BOOLEAN = {
    "1": True,
    "t": True,
    "T": True,
    "TRUE": True,
    "true": True,
    "True": True,
    "0": False,
    "f": False,
    "F": False,
    "FALSE": False,
    "false": False,
    "False": False,
}

_SIZE = re.compile(r"^([0-9]+)([kKmMgG]?)$")
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_TIME = re.compile(r"^([0-9]+)(ms|s|m|h|d)?$")
_TIME_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
BACKEND_PROTOCOLS = ("HTTP", "HTTPS", "GRPC", "GRPCS", "H2C")


@frozen
class Outcome:
    annotation: str  # the full key, as written
    value: str
    kind: str  # "served" | "refused" | "unknown"
    meaning: str


def is_refused(name: str) -> bool:
    return name.endswith("-snippet") or name in _REFUSED_EXACT


def collect(annotations: Mapping[str, object]) -> tuple[dict[str, str], list[Outcome]]:
    """
    Our annotations by short name (C{tenantgw.io/} winning over
    C{nginx.ingress.kubernetes.io/}), and the outcome of each.
    """
    values: dict[str, str] = {}
    keys: dict[str, str] = {}
    for prefix in reversed(PREFIXES):  # the nginx prefix first, so ours overwrites
        for key, raw in annotations.items():
            if isinstance(key, str) and key.startswith(prefix):
                name = key[len(prefix) :]
                values[name] = raw if isinstance(raw, str) else str(raw)
                keys[name] = key
    outcomes = []
    for name in sorted(values):
        if is_refused(name):
            kind, meaning = "refused", "would be configuration text or code in the proxy"
        elif name in SERVED:
            kind, meaning = "served", SERVED[name]
        else:
            kind, meaning = "unknown", "not served; the Ingress is served without it"
        outcomes.append(Outcome(keys[name], values[name], kind, meaning))
    return values, outcomes


def parse_boolean(text: str) -> bool:
    try:
        return NGINX_BOOLEAN[text.strip()]
    except KeyError:
        raise ValueError(f"{text!r} is not a boolean (true or false)") from None


def parse_size(text: str) -> int:
    """nginx sizes: C{8m}, C{1g}, C{512k}, C{1024}; C{0} means no limit."""
    found = _SIZE.match(text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not an nginx size (e.g. 8m, 512k, 1g)")
    return int(found.group(1)) * _SIZE_UNITS[found.group(2).lower()]


def parse_seconds(text: str) -> float:
    """Seconds as ingress-nginx writes them (C{60}), or with an nginx unit (C{5m})."""
    found = _TIME.match(text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not a time in seconds (e.g. 60, or 5m)")
    return int(found.group(1)) * _TIME_UNITS[found.group(2)]


def parse_positive_int(text: str) -> int:
    stripped = text.strip()
    if not stripped.isdigit() or int(stripped) <= 0:
        raise ValueError(f"{text!r} is not a whole number > 0")
    return int(stripped)


def parse_cidrs(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not an IP address or CIDR") from None
    if not networks:
        raise ValueError("no CIDR given")
    return tuple(networks)


def parse_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())
