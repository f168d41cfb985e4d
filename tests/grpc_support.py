"""
A real grpcio server for the gRPC tests, with generic handlers on raw bytes
(no generated code, so no grpcio-tools), and the tenant that routes to it.

The service is C{test.Echo}:

  - C{Echo} (unary): answers C{b"echo:" + request}; a request of
    C{b"fail"} aborts with NOT_FOUND and message "nope";
  - C{Split} (server streaming): one response per byte of the request,
    or, for C{b"big:N"}, N MiB in 1 MiB messages;
  - C{Join} (client streaming): the requests joined with C{b","};
  - C{Chat} (bidi): each request back, upper-cased, as it comes;
  - C{Size} (unary): the request's length, as decimal;
  - C{Slow} (unary): waits up to 5 s while the call is active, records
    whether it saw the cancellation.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from tenantgw.compile.compiler import compile_snapshot
from tenantgw.plans.snapshot import Snapshot

MAX_MESSAGE = 80 * 1024 * 1024
_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
]


class GrpcBackend:
    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []
        self.cancelled = threading.Event()
        self.slow_started = threading.Event()
        handlers = {
            "Echo": grpc.unary_unary_rpc_method_handler(self._echo),
            "Split": grpc.unary_stream_rpc_method_handler(self._split),
            "Join": grpc.stream_unary_rpc_method_handler(self._join),
            "Chat": grpc.stream_stream_rpc_method_handler(self._chat),
            "Size": grpc.unary_unary_rpc_method_handler(self._size),
            "Slow": grpc.unary_unary_rpc_method_handler(self._slow),
        }
        self.server = grpc.server(ThreadPoolExecutor(max_workers=8), options=_OPTIONS)
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("test.Echo", handlers),)
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(0).wait(5)

    def _record(self, context: Any) -> None:
        self.metadata.append({k: v for k, v in context.invocation_metadata()})

    def _echo(self, request: bytes, context: Any) -> bytes:
        self._record(context)
        if request == b"fail":
            context.abort(grpc.StatusCode.NOT_FOUND, "nope")
        return b"echo:" + request

    def _split(self, request: bytes, context: Any) -> Any:
        self._record(context)
        if request.startswith(b"big:"):
            chunk = b"x" * (1024 * 1024)
            for _ in range(int(request[4:])):
                yield chunk
            return
        for byte in request:
            yield bytes([byte])

    def _join(self, requests: Any, context: Any) -> bytes:
        self._record(context)
        return b",".join(requests)

    def _chat(self, requests: Any, context: Any) -> Any:
        self._record(context)
        for request in requests:
            yield request.upper()

    def _size(self, request: bytes, context: Any) -> bytes:
        return b"%d" % len(request)

    def _slow(self, request: bytes, context: Any) -> bytes:
        self.slow_started.set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if not context.is_active():
                self.cancelled.set()
                return b""
            time.sleep(0.02)
        return b"slow"


def grpc_tenant(
    port: int,
    port_name: str = "grpc",
    app_protocol: str | None = None,
    timeout: int | None = None,
    tenant_extra: str = "",
    route_extra: str = "",
) -> Snapshot:
    """
    Tenant C{g} on C{g.example}, one route to Service C{rpc} on a port named
    C{port_name}; C{tenant_extra} is more of tenant.yaml (top level),
    C{route_extra} more of the route (indented four spaces).
    """
    route = "  - name: rpc\n    backends: [{service: rpc, port: 50051}]\n" + route_extra
    if timeout is not None:
        route += f"    timeoutSeconds: {timeout}\n"
    service_port: dict[str, Any] = {"name": port_name, "port": 50051}
    if app_protocol is not None:
        service_port["appProtocol"] = app_protocol
    objects: list[dict[str, Any]] = [
        {
            "kind": "Namespace",
            "metadata": {"name": "g", "annotations": {"tenantgw.io/allowed-hosts": "g.example"}},
        },
        {
            "kind": "ConfigMap",
            "metadata": {
                "name": "tenant",
                "namespace": "g",
                "labels": {"tenantgw.io/tenant": "true"},
            },
            "data": {"tenant.yaml": "hosts: [g.example]\n" + tenant_extra + "routes:\n" + route},
        },
        {
            "kind": "Service",
            "metadata": {"name": "rpc", "namespace": "g"},
            "spec": {"ports": [service_port]},
        },
        {
            "kind": "EndpointSlice",
            "metadata": {
                "name": "rpc-1",
                "namespace": "g",
                "labels": {"kubernetes.io/service-name": "rpc"},
            },
            "addressType": "IPv4",
            "ports": [{"name": port_name, "port": port}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
        },
    ]
    snapshot = compile_snapshot(objects)
    if "g.example" not in snapshot.exact_hosts:
        raise AssertionError(f"gRPC tenant not accepted: {snapshot.statuses}")
    return snapshot


def channel_to(port: int, authority: str = "g.example") -> grpc.Channel:
    return grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[*_OPTIONS, ("grpc.default_authority", authority)]
    )
