"""
The responses the gateway itself produces (contract section 6).

Bodies are fixed texts chosen by status, in plain text or JSON by
C{Accept}, from the one table in L{tenantgw.http1.responses} that the
front's refusals use too; nothing from the request is ever echoed, so no
tenant's client can make the gateway reflect markup or smuggle bytes into a
log viewer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from tenantgw.http1.responses import fixed_body, reason_phrase, wants_json
from tenantgw.wire import grpc

if TYPE_CHECKING:
    # Typing only: the request module answers its own 408s through this one.
    from tenantgw.dataplane.request import GatewayRequest


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
    content_type, body = fixed_body(
        status, wants_json(request.requestHeaders.getRawHeaders(b"accept"))
    )
    request.setResponseCode(status, reason_phrase(status))
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
    request.setResponseCode(status, reason_phrase(status))
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
    request.setResponseCode(status, reason_phrase(status))
    response_headers = request.responseHeaders
    response_headers.setRawHeaders(b"content-length", [b"0"])
    response_headers.setRawHeaders(b"x-request-id", [request.request_id])
    for name, value in headers:
        response_headers.addRawHeader(name, value)
    if not request.body_complete:
        response_headers.setRawHeaders(b"connection", [b"close"])
        request.channel.persistent = False
    request.finish()
