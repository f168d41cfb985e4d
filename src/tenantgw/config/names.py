"""
Syntax of the names a tenant may write: hostnames, Kubernetes object names,
port names, HTTP tokens, header values and URL paths.

Each validator returns the normalized value or raises L{ValueError} whose
message is written for the tenant (it ends up in a Kubernetes Event).  They
live apart from the parser because the namespace policy and the data plane
need the same definitions; two slightly different ideas of "a valid host"
would be a hole between them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from tenantgw.wire.fields import HOP_BY_HOP

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_IANA_SVC_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
# RFC 9110 section 5.6.2 token; used for header names and methods.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Gateway API HTTPPathMatch: path characters, or a %XX escape.
_PATH = re.compile(r"(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+")

MAX_LABEL_LENGTH = 63
MAX_SUBDOMAIN_LENGTH = 253
MAX_PORT_NAME_LENGTH = 15
MAX_PATH_LENGTH = 1024
MAX_HEADER_VALUE_LENGTH = 4096

OTHER_NAMESPACE = "references to other namespaces are not allowed"
MAX_QUERY_NAME_LENGTH = 256
MAX_QUERY_VALUE_LENGTH = 1024
REDIRECT_SCHEMES = ("http", "https")

_FRAMING = "it frames the message, which only the gateway may do"
_HOP_BY_HOP = "it is hop-by-hop and belongs to the gateway's connection"
# Headers no route edit may touch, whichever dialect wrote the edit: the
# hop-by-hop table of the wire layer (one list for stripping and for this),
# plus the fields that frame a message or pick its virtual host.
UNMODIFIABLE_HEADERS: Mapping[str, str] = {
    **{name.decode("ascii"): _HOP_BY_HOP for name in sorted(HOP_BY_HOP)},
    "host": "set the upstream Host with rewrite.host (a URLRewrite hostname in an HTTPRoute)",
    "content-length": _FRAMING,
    "transfer-encoding": _FRAMING,
}


def validate_dns1123_label(name: str) -> str:
    """Route names: they appear in metrics labels and status, so keep them tame."""
    if not name:
        raise ValueError("must not be empty")
    if len(name) > MAX_LABEL_LENGTH:
        raise ValueError(f"must be at most {MAX_LABEL_LENGTH} characters")
    if not _DNS1123_LABEL.fullmatch(name):
        raise ValueError(
            "must be a DNS label: lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def validate_service_name(name: str) -> str:
    """
    A Service in the tenant's own namespace.  Anything with a C{/} or a
    C{.} would be read by someone, somewhere, as C{namespace/name} or as
    C{name.namespace[.svc...]}, so both are refused outright rather than
    trusting every later consumer to ignore them.
    """
    if "/" in name or "." in name:
        raise ValueError(f"{OTHER_NAMESPACE}; name a Service in this namespace (e.g. 'api')")
    if not name:
        raise ValueError("must not be empty")
    if len(name) > MAX_LABEL_LENGTH:
        raise ValueError(f"must be at most {MAX_LABEL_LENGTH} characters")
    if not _DNS1035_LABEL.fullmatch(name):
        raise ValueError(
            "must be a Service name (DNS-1035 label): lower-case letters, "
            "digits and '-', starting with a letter"
        )
    return name


def validate_secret_name(name: str) -> str:
    """Secrets are DNS-1123 subdomains; C{ns/name} would reach across namespaces."""
    if "/" in name:
        raise ValueError(f"{OTHER_NAMESPACE}; name a Secret in this namespace (e.g. 'shop-tls')")
    if not name:
        raise ValueError("must not be empty")
    if len(name) > MAX_SUBDOMAIN_LENGTH:
        raise ValueError(f"must be at most {MAX_SUBDOMAIN_LENGTH} characters")
    if not all(_DNS1123_LABEL.fullmatch(label) for label in name.split(".")):
        raise ValueError(
            "must be a Secret name (DNS-1123 subdomain): lower-case letters, digits, '-' and '.'"
        )
    return name


def validate_port_name(name: str) -> str:
    """IANA service name, as Kubernetes requires for named Service ports."""
    if name.isdigit():
        raise ValueError("a port number must be written without quotes")
    if not name or len(name) > MAX_PORT_NAME_LENGTH:
        raise ValueError(f"a port name must be 1 to {MAX_PORT_NAME_LENGTH} characters")
    if not _IANA_SVC_NAME.fullmatch(name) or "--" in name or not any(c.isalpha() for c in name):
        raise ValueError(
            "must be a port number or a port name (lower-case letters, digits "
            "and single '-', with at least one letter)"
        )
    return name


def validate_hostname(raw: str, *, allow_wildcard: bool) -> str:
    """
    Normalize a host (lower case, no trailing dot) because host matching is
    case-insensitive and C{a.b.} is C{a.b}; refuse IP literals because a
    tenant must not be able to claim an address that belongs to everyone,
    and ports because matching ignores them (a port would never match).
    """
    if raw.startswith("[") or _is_ip_literal(raw):
        raise ValueError("IP addresses are not allowed; use a DNS name")
    if ":" in raw:
        raise ValueError("must not include a port")
    host = raw.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise ValueError("must not be empty")
    if len(host) > MAX_SUBDOMAIN_LENGTH:
        raise ValueError(f"must be at most {MAX_SUBDOMAIN_LENGTH} characters")
    if not host.isascii():
        raise ValueError("must be ASCII; write internationalized names as punycode (xn--...)")
    base = host
    if "*" in host:
        if not allow_wildcard:
            raise ValueError("wildcards are not allowed here")
        if not host.startswith("*.") or "*" in host[2:]:
            raise ValueError("a wildcard must be the whole leftmost label, as in '*.example.com'")
        base = host[2:]
    labels = base.split(".")
    for label in labels:
        if len(label) > MAX_LABEL_LENGTH:
            raise ValueError(f"each label must be at most {MAX_LABEL_LENGTH} characters")
        if not _DNS1123_LABEL.fullmatch(label):
            raise ValueError(
                "must be a DNS name: labels of lower-case letters, digits and '-', separated by '.'"
            )
    if labels[-1].isdigit():
        # WHATWG URL parsing turns "1.2.3.4" and "10.1" into IPv4 addresses.
        raise ValueError("IP addresses are not allowed; use a DNS name")
    return host


def _is_ip_literal(text: str) -> bool:
    try:
        ipaddress.ip_address(text.rstrip("."))
    except ValueError:
        return False
    return True


def validate_token(value: str) -> str:
    """An RFC 9110 token: header names and methods.  Anything else splits requests."""
    if not _TOKEN.fullmatch(value):
        raise ValueError("must be an HTTP token (letters, digits and !#$%&'*+-.^_`|~, no spaces)")
    return value


def validate_header_value(value: str, *, max_length: int = MAX_HEADER_VALUE_LENGTH) -> str:
    """
    CR, LF and NUL would let a tenant write headers of their choosing into
    someone's connection (response splitting); other control characters
    are refused as well since no HTTP parser agrees on them.  Non-ASCII is
    refused because its wire encoding is ambiguous (RFC 9110 obs-text).
    """
    if any(c in value for c in "\r\n\0"):
        raise ValueError("must not contain CR, LF or NUL")
    if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value):
        raise ValueError("must not contain control characters")
    if not value.isascii():
        raise ValueError("must be ASCII")
    if len(value) > max_length:
        raise ValueError(f"must be at most {max_length} characters")
    return value


def validate_path(path: str) -> str:
    """
    An absolute URL path without query or fragment.  Dot segments, C{//}
    and encoded slashes are refused (as Gateway API does) because
    backends normalize them differently from us, which turns a prefix
    match or a rewrite into a way around another route's access rules.
    """
    if any(c in path for c in "\r\n\0"):
        raise ValueError("must not contain CR, LF or NUL")
    if not path.startswith("/"):
        raise ValueError("must start with '/'")
    if len(path) > MAX_PATH_LENGTH:
        raise ValueError(f"must be at most {MAX_PATH_LENGTH} characters")
    if "?" in path or "#" in path:
        raise ValueError("must not contain '?' or '#': a path has no query or fragment")
    segments = path.split("/")
    if ".." in segments or "." in segments:
        raise ValueError("must not contain '.' or '..' segments")
    if "//" in path:
        raise ValueError("must not contain '//'")
    if "%2f" in path.lower() or "%5c" in path.lower():
        raise ValueError("must not contain encoded slashes (%2F, %5C)")
    if not _PATH.fullmatch(path):
        raise ValueError("must contain only URL path characters; percent-encode anything else")
    return path


def validate_header_name(name: str) -> str:
    """Header names compare case-insensitively, so they are kept lower-cased."""
    return validate_token(name).lower()


def validate_modifiable_header(name: str) -> str:
    lowered = validate_header_name(name)
    reason = UNMODIFIABLE_HEADERS.get(lowered)
    if reason is not None:
        raise ValueError(f"{lowered} cannot be modified: {reason}")
    return lowered


def validate_query_name(name: str) -> str:
    if len(name) > MAX_QUERY_NAME_LENGTH:
        raise ValueError(f"must be at most {MAX_QUERY_NAME_LENGTH} characters")
    return validate_token(name)


def validate_query_value(value: str) -> str:
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError("must not contain control characters (CR, LF, NUL, ...)")
    if len(value) > MAX_QUERY_VALUE_LENGTH:
        raise ValueError(f"must be at most {MAX_QUERY_VALUE_LENGTH} characters")
    return value


def validate_scheme(scheme: str) -> str:
    lowered = scheme.lower()
    if lowered not in REDIRECT_SCHEMES:
        raise ValueError(f"must be one of {', '.join(REDIRECT_SCHEMES)}, got {scheme!r}")
    return lowered
