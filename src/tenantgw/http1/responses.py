"""
The one table of the gateway's own answers, and response-head serializing.

Every status the gateway itself answers has one reason phrase, one plain
text body and one JSON body (contract section 6: "plain or JSON by
Accept").  The front's refusals (written before any request object exists)
and the router's answers (C{tenantgw.dataplane.responses}) both read this
table, so a 414 says the same whichever layer sent it, and both honour
C{Accept}.  Nothing from the request is ever part of a body.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import NamedTuple

from tenantgw.http1.head import serialize_fields


class Fixed(NamedTuple):
    reason: bytes
    text: bytes
    json: bytes


# status: (reason phrase, RFC 9110 wording; error code, the bodies' word).
_STATUSES = {
    301: (b"Moved Permanently", "moved_permanently"),
    302: (b"Found", "found"),
    303: (b"See Other", "see_other"),
    307: (b"Temporary Redirect", "temporary_redirect"),
    308: (b"Permanent Redirect", "permanent_redirect"),
    400: (b"Bad Request", "bad_request"),
    401: (b"Unauthorized", "unauthorized"),
    403: (b"Forbidden", "forbidden"),
    404: (b"Not Found", "not_found"),
    405: (b"Method Not Allowed", "method_not_allowed"),
    408: (b"Request Timeout", "request_timeout"),
    413: (b"Content Too Large", "content_too_large"),
    # The contract's case is "request line too long": the limit is on the
    # whole line, method and version included, not only the URI.
    414: (b"URI Too Long", "request_line_too_long"),
    421: (b"Misdirected Request", "misdirected_request"),
    429: (b"Too Many Requests", "too_many_requests"),
    431: (b"Request Header Fields Too Large", "request_header_fields_too_large"),
    500: (b"Internal Server Error", "internal_error"),
    501: (b"Not Implemented", "not_implemented"),
    502: (b"Bad Gateway", "bad_gateway"),
    503: (b"Service Unavailable", "service_unavailable"),
    504: (b"Gateway Timeout", "gateway_timeout"),
}

FIXED = {
    status: Fixed(
        reason,
        (code.replace("_", " ") + "\n").encode("ascii"),
        json.dumps({"error": code, "status": status}).encode("ascii") + b"\n",
    )
    for status, (reason, code) in _STATUSES.items()
}

TEXT_TYPE = b"text/plain; charset=utf-8"
JSON_TYPE = b"application/json"

# Reason phrases of statuses the gateway only forwards or sends bodiless.
_OTHER_REASONS = {
    100: b"Continue",
    101: b"Switching Protocols",
    200: b"OK",
    204: b"No Content",
    304: b"Not Modified",
}


def reason_phrase(status: int) -> bytes:
    fixed = FIXED.get(status)
    if fixed is not None:
        return fixed.reason
    return _OTHER_REASONS.get(status, b"Unknown")


def wants_json(accept: Iterable[bytes] | None) -> bool:
    """Whether an Accept field's values ask for JSON (any mention of json)."""
    return accept is not None and any(b"json" in value for value in accept)


def fixed_body(status: int, as_json: bool) -> tuple[bytes, bytes]:
    """(content type, body) of the gateway's answer with C{status}."""
    fixed = FIXED[status]
    if as_json:
        return JSON_TYPE, fixed.json
    return TEXT_TYPE, fixed.text


def serialize_response_head(
    status: int,
    fields: Iterable[tuple[bytes, bytes]],
    reason: bytes | None = None,
    version: bytes = b"HTTP/1.1",
) -> bytes:
    """
    A status line and header section.  A ValueError for a field that a
    client would parse differently (so no header can be split in two).
    """
    if not 100 <= status <= 999:
        raise ValueError("status out of range")
    if reason is None:
        reason = reason_phrase(status)
    if b"\r" in reason or b"\n" in reason:
        raise ValueError("reason phrase with CR or LF")
    return b"%s %d %s\r\n%s\r\n" % (version, status, reason, serialize_fields(fields))


def refusal(status: int, request_id: bytes, as_json: bool = False) -> bytes:
    """
    The whole response for a request the front refused: fixed body, the
    request id, and Connection: close, since after a framing error nothing
    later on the connection can be trusted.
    """
    content_type, body = fixed_body(status, as_json)
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, FIXED[status].reason),
            b"Content-Type: %s\r\nContent-Length: %d\r\n" % (content_type, len(body)),
            b"Cache-Control: no-store\r\nConnection: close\r\n",
            b"X-Request-Id: %s\r\n\r\n" % request_id,
            body,
        )
    )
