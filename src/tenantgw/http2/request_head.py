"""
The one decision on a received HTTP/2 header list: a request we forward, or
a refusal.

RFC 9113 section 8.1.1: a malformed request must not be forwarded.  The
upstream speaks HTTP/1.1, so anything that would change meaning when it is
written as a request line and field lines (SP in C{:path}, a method that is
not a token, CR/LF or other controls in a value, a second Host) is refused
here, before any upstream is chosen.  Every refusal is a 400 on the stream,
except CONNECT, which is a 501: we do not tunnel.  The connection stays up
(a malformed request is a stream error, not a connection error).

C{h2}'s own inbound validation is switched off, because it raises a
connection error (GOAWAY) for each of these and so would let one bad
request end every other request sharing the connection; this module checks
all it checked and more.  What C{h2} still checks itself: HPACK, frame
sequencing, Content-Length digits and consistency with the DATA received.

Pure: header list in, verdict out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from attrs import frozen

from tenantgw.wire.fields import (
    HOP_BY_HOP,
    UNDERSCORES_ALLOW,
    UNDERSCORES_DROP,
    UNDERSCORES_REJECT,
    is_token,
    valid_field_value,
)

# RFC 9113 section 8.2.2: these make a request malformed in HTTP/2.
CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade"}
)
_REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path"})
_SCHEMES = frozenset({b"http", b"https"})
# Content-Length above this is refused, as on HTTP/1.1 (a backend that keeps
# lengths in a signed 64-bit integer would read a larger one differently).
MAX_CONTENT_LENGTH = 2**63 - 1
# RFC 3986 authority without userinfo: reg-name or IPv4, or an IP literal,
# then an optional port.  Anything else (SP, "/", "@", controls) is refused.
_AUTHORITY = re.compile(rb"(?:[A-Za-z0-9\-._~!$&'()*+,;=%]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]*)?\Z")
# Visible ASCII except "#": the characters a request-target may hold.
_PATH_BYTES = bytes(range(0x21, 0x7F))
_WHITESPACE = b" \t"


@frozen
class RequestHead:
    """A request we forward: C{headers} are lower-case, Host first and only once."""

    method: bytes
    path: bytes
    authority: bytes
    headers: list[tuple[bytes, bytes]]
    content_length: int | None


@frozen
class Refusal:
    """C{status} goes to the client; C{reason} is for logs and tests only."""

    status: int
    reason: str


def bad(reason: str) -> Refusal:
    return Refusal(400, reason)


def parse_request_head(
    fields: Iterable[tuple[bytes, bytes]], underscores: str = UNDERSCORES_DROP
) -> RequestHead | Refusal:
    pseudo: dict[bytes, bytes] = {}
    kept: list[tuple[bytes, bytes]] = []
    hosts: list[bytes] = []
    length: int | None = None
    regular_seen = False
    for name, value in fields:
        if name[:1] == b":":
            if regular_seen:
                return bad("pseudo-header after a regular field")
            if name not in _REQUEST_PSEUDO:
                return bad("pseudo-header not allowed in a request")
            if name in pseudo:
                return bad("duplicate pseudo-header")
            pseudo[name] = value
            continue
        regular_seen = True
        if not is_token(name) or name.lower() != name:
            return bad("field name is not a lower-case token")
        if not valid_field_value(value) or (
            value and (value[0] in _WHITESPACE or value[-1] in _WHITESPACE)
        ):
            return bad("field value with control characters or surrounding whitespace")
        if name in CONNECTION_SPECIFIC:
            return bad("connection-specific field")
        if name == b"te":
            if value.lower() != b"trailers":
                return bad("te other than trailers")
            # Kept: "te: trailers" says the client reads trailers (gRPC
            # needs it); the exchange writes it to HTTP/2 upstreams only.
            kept.append((name, value))
            continue
        if b"_" in name:
            if underscores == UNDERSCORES_REJECT:
                return bad("field name with an underscore")
            if underscores != UNDERSCORES_ALLOW:
                continue
        if name == b"host":
            hosts.append(value)
            continue
        if name == b"content-length":
            if not value.isdigit() or len(value) > 19 or int(value) > MAX_CONTENT_LENGTH:
                return bad("content-length out of range")
            declared = int(value)
            if length is not None and declared != length:
                return bad("conflicting content-length")
            if length is not None:
                continue  # one is forwarded
            length = declared
        elif name in HOP_BY_HOP:
            continue  # meaningful only on this hop (http2-settings, trailer, ...)
        kept.append((name, value))

    method = pseudo.get(b":method")
    if method is None or not is_token(method):
        return bad("missing or malformed :method")
    if method == b"CONNECT":
        return Refusal(501, "CONNECT is not supported")
    scheme = pseudo.get(b":scheme")
    if scheme is None or scheme.lower() not in _SCHEMES:
        return bad("missing or unsupported :scheme")
    path = pseudo.get(b":path")
    if not path or path[:1] != b"/":
        return bad(":path is not origin-form")
    if path.translate(None, _PATH_BYTES) or b"#" in path:
        return bad(":path with characters outside 0x21-0x7E, or a fragment")
    if len(hosts) > 1:
        return bad("more than one host field")
    authority = pseudo.get(b":authority")
    if authority is not None:
        if hosts and hosts[0].lower() != authority.lower():
            return bad(":authority and host disagree")
    elif hosts:
        authority = hosts[0]
    if not authority or _AUTHORITY.match(authority) is None:
        return bad("missing or malformed authority")
    kept.insert(0, (b"host", authority))
    return RequestHead(method, path, authority, kept, length)


def check_trailers(fields: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Why a trailer section is malformed, or None (then it is filtered and passed on)."""
    for name, value in fields:
        if name[:1] == b":":
            return "pseudo-header in trailers"
        if not is_token(name) or name.lower() != name:
            return "field name is not a lower-case token"
        if not valid_field_value(value):
            return "field value with control characters"
        if name in CONNECTION_SPECIFIC:
            return "connection-specific field"
    return None
