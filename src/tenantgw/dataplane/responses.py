"""
The responses the gateway itself produces (contract section 6).

Bodies are fixed texts chosen by status, in plain text or JSON by
C{Accept}; nothing from the request is ever echoed, so no tenant's client
can make the gateway reflect markup or smuggle bytes into a log viewer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from twisted.web.http import RESPONSES

from tenantgw.dataplane.request import GatewayRequest
from tenantgw.wire import grpc

_CODES = {
    301: "moved_permanently",
    302: "found",
    303: "see_other",
    307: "temporary_redirect",
    308: "permanent_redirect",
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "content_too_large",
    414: "uri_too_long",
    421: "misdirected_request",
    429: "too_many_requests",
    431: "request_header_fields_too_large",
    500: "internal_error",
    501: "not_implemented",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}

_PLAIN = {code: (name.replace("_", " ") + "\n").encode("ascii") for code, name in _CODES.items()}
_JSON = {
    code: json.dumps({"error": name, "status": code}).encode("ascii") + b"\n"
    for code, name in _CODES.items()
}


def _wants_json(request: GatewayRequest) -> bool:
    accept = request.requestHeaders.getRawHeaders(b"accept")
    return accept is not None and any(b"json" in value for value in accept)


def respond(
    request: GatewayRequest,
    status: int,
    headers: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]] | None = None,
    close: bool = False,
) -> None:
    """Answers with the fixed body for C{status}; safe to call at most once."""
    if request.finished or request.channel is None or request.startedWriting:
        return
    if request.refused:
        return
    if request.multiplexed and grpc.is_grpc(
        request.requestHeaders.getRawHeaders(b"content-type", [None])[0]
    ):
        _respond_grpc(request, status, headers)
        return
    if _wants_json(request):
        body, content_type = _JSON[status], b"application/json"
    else:
        body, content_type = _PLAIN[status], b"text/plain; charset=utf-8"
    request.setResponseCode(status, RESPONSES.get(status, b"Error"))
    response_headers = request.responseHeaders
    response_headers.setRawHeaders(b"content-type", [content_type])
    response_headers.setRawHeaders(b"content-length", [b"%d" % len(body)])
    response_headers.setRawHeaders(b"x-request-id", [request.request_id])
    response_headers.setRawHeaders(b"cache-control", [b"no-store"])
    if headers:
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        for name, value in pairs:
            response_headers.addRawHeader(name, value)
    if close or not request.body_complete:
        response_headers.setRawHeaders(b"connection", [b"close"])
        request.channel.persistent = False
    request.write(body)
    request.finish()


def grpc_trailers(status: int) -> list[tuple[bytes, bytes]]:
    """The grpc-status and grpc-message for one of the gateway's own HTTP statuses."""
    return [
        (b"grpc-status", b"%d" % grpc.status_for_http(status)),
        (b"grpc-message", grpc.MESSAGE_FOR_HTTP.get(status, b"gateway error")),
    ]


def _respond_grpc(
    request: GatewayRequest,
    status: int,
    headers: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]] | None,
) -> None:
    """
    A gRPC client reads the outcome from grpc-status only, so the gateway's
    answer is a trailers-only response: :status 200 and the gRPC status in
    one HEADERS frame that ends the stream.  The HTTP status the gateway
    decided is what metrics and the access log record.
    """
    block = [
        (b"content-type", b"application/grpc"),
        *grpc_trailers(status),
        (b"x-request-id", request.request_id),
    ]
    if headers:
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        block += [(name.lower(), value) for name, value in pairs]
    request.setResponseCode(status, RESPONSES.get(status, b"Error"))
    request.startedWriting = 1
    channel = request.channel
    assert channel is not None
    channel.write_head_only(200, block)  # type: ignore[attr-defined]
    request.finish()


def respond_empty(
    request: GatewayRequest, status: int, headers: Iterable[tuple[bytes, bytes]]
) -> None:
    """
    A gateway-made answer with no body (a CORS preflight): only the status
    and C{headers}, so nothing of the request is echoed.
    """
    if request.finished or request.channel is None or request.startedWriting or request.refused:
        return
    request.setResponseCode(status, RESPONSES.get(status, b"OK"))
    response_headers = request.responseHeaders
    response_headers.setRawHeaders(b"content-length", [b"0"])
    response_headers.setRawHeaders(b"x-request-id", [request.request_id])
    for name, value in headers:
        response_headers.addRawHeader(name, value)
    if not request.body_complete:
        response_headers.setRawHeaders(b"connection", [b"close"])
        request.channel.persistent = False
    request.finish()
