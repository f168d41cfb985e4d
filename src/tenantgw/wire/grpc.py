"""
The gRPC wire rules the gateway applies (gRPC over HTTP/2, "PROTOCOL-HTTP2"):
which requests are gRPC, what a ``grpc-timeout`` says, and which gRPC status
stands for an HTTP status the gateway itself answers with.

A gRPC client reads the outcome of a call from ``grpc-status`` only, never
from ``:status``: a plain 404 page reaches the application as "UNKNOWN,
unexpected HTTP status", which tells the caller nothing.  So gateway-made
answers to gRPC requests are trailers-only responses (``:status: 200`` and
``grpc-status`` in one HEADERS frame that ends the stream).
"""

from __future__ import annotations

import re

# https://grpc.github.io/grpc/core/md_doc_statuscodes.html
OK = 0
CANCELLED = 1
UNKNOWN = 2
DEADLINE_EXCEEDED = 4
RESOURCE_EXHAUSTED = 8
PERMISSION_DENIED = 7
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14
UNAUTHENTICATED = 16

# The gateway's own statuses (tenantgw.dataplane.responses), as gRPC sees them.
STATUS_FOR_HTTP = {
    400: INTERNAL,
    401: UNAUTHENTICATED,
    403: PERMISSION_DENIED,
    404: UNIMPLEMENTED,
    405: UNIMPLEMENTED,
    408: DEADLINE_EXCEEDED,
    413: RESOURCE_EXHAUSTED,
    421: UNAVAILABLE,
    429: RESOURCE_EXHAUSTED,
    500: INTERNAL,
    501: UNIMPLEMENTED,
    502: UNAVAILABLE,
    503: UNAVAILABLE,
    504: DEADLINE_EXCEEDED,
}

# grpc-message is percent-encoded text; these fixed ones need no escaping.
MESSAGE_FOR_HTTP = {
    400: b"bad request",
    401: b"unauthenticated",
    403: b"permission denied",
    404: b"no route for this method",
    405: b"method not allowed",
    408: b"request timeout",
    413: b"message too large",
    421: b"misdirected request",
    429: b"rate limited",
    500: b"internal error",
    501: b"not implemented",
    502: b"upstream unavailable",
    503: b"service unavailable",
    504: b"deadline exceeded at the gateway",
}

_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
# At most 8 digits, then one unit (the spec's TimeoutValue and TimeoutUnit).
_TIMEOUT = re.compile(rb"([0-9]{1,8})([HMSmun])\Z")


def is_grpc(content_type: bytes | None) -> bool:
    """``application/grpc``, ``application/grpc+proto``, ``application/grpc;...``."""
    if content_type is None:
        return False
    value = content_type.lower()
    return value.startswith(b"application/grpc") and (
        len(value) == 16 or value[16:17] in (b"+", b";")
    )


def parse_timeout(value: bytes) -> float | None:
    """Seconds from a ``grpc-timeout`` value, or None when it is malformed."""
    match = _TIMEOUT.match(value.strip())
    if match is None:
        return None
    return int(match.group(1)) * _UNITS[match.group(2)]


def format_timeout(seconds: float) -> bytes:
    """A ``grpc-timeout`` value for C{seconds}, in milliseconds (rounded up)."""
    millis = max(1, int(seconds * 1000 + 0.999))
    if millis <= 99_999_999:
        return b"%dm" % millis
    return b"%dS" % min(99_999_999, int(seconds + 0.999))


def status_for_http(status: int) -> int:
    return STATUS_FOR_HTTP.get(status, UNKNOWN)
