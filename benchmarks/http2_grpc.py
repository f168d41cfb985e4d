#!/usr/bin/env python3
"""
HTTP/2 and gRPC through tenantgw, against its peers, in one run.

Three measurements, each pinned as proxy_throughput.py pins (the proxy on
--proxy-cpu, load and backends on --load-cpu):

  1. the HTTP/2 front against HTTP/1.1 on the same gateway and listener:
     h2load -c10 -m10 (h2c prior knowledge on --http) and wrk -c100 (the
     same 100 requests in flight), to the same nginx backend;
  2. a large upload (--upload-mib, 200 by default) with curl over HTTP/1.1
     and over HTTP/2, through tenantgw to an nginx that reads the whole body;
  3. gRPC unary calls (benchmarks/peers/grpc_load.py, a grpcio load loop
     with 50 calls in flight) to a grpcio server: direct, through tenantgw
     (h2c backend), and through nginx grpc_pass.

    .venv/bin/python benchmarks/http2_grpc.py [--duration 8] [--no-pin]

Needs h2load (nghttp2-client), wrk, nginx, curl, and grpcio in the venv.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from proxy_throughput import (  # noqa: E402
    HOST,
    PEERS,
    READY_TIMEOUT,
    VHOST,
    Children,
    Context,
    Settings,
    free_port,
    nginx_config,
    proxies_backend,
    start_nginx,
    start_tenantgw,
    temp_dir,
    tenant_manifests,
    wait_until,
)

GRPC_HOST = "grpc.local"


def grpc_manifests(port: int) -> str:
    """A second tenant: grpc.local, one route to a Service port named grpc (h2c)."""
    return textwrap.dedent(
        f"""\
        ---
        apiVersion: v1
        kind: Namespace
        metadata:
          name: rpc
          annotations: {{tenantgw.io/allowed-hosts: {GRPC_HOST}}}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: tenant
          namespace: rpc
          labels: {{tenantgw.io/tenant: "true"}}
        data:
          tenant.yaml: |
            hosts: [{GRPC_HOST}]
            routes:
              - name: rpc
                backends: [{{service: echo, port: grpc}}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {{name: echo, namespace: rpc}}
        spec:
          ports: [{{name: grpc, port: 50051, appProtocol: kubernetes.io/h2c}}]
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata:
          name: echo-1
          namespace: rpc
          labels: {{kubernetes.io/service-name: echo}}
        addressType: IPv4
        endpoints: [{{addresses: ["127.0.0.1"], conditions: {{ready: true}}}}]
        ports: [{{name: grpc, port: {port}}}]
        """
    )


def start_backend(tmp: Path, children: Children, cpu: int) -> int:
    """nginx: "hello" on /, and /upload read in full (proxied to a sink) before a 200."""
    port, sink = free_port(), free_port()
    block = textwrap.dedent(
        f"""\
                location / {{ return 200 "hello\\n"; }}
                location /upload {{
                    proxy_pass http://{HOST}:{sink}/;
                    proxy_pass_request_body off;
                    proxy_set_header Content-Length "";
                }}"""
    )
    extra = (
        f"    client_max_body_size 0;\n"
        f'    server {{ listen {HOST}:{sink}; location / {{ return 200 "got\\n"; }} }}\n'
    )
    child, _ = start_nginx(
        tmp, children, "backend", lambda wd: nginx_config(wd, port, block, extra), cpu
    )
    wait_until("backend nginx", child, lambda: proxies_backend(port), READY_TIMEOUT)
    return port


def run(argv: list[str], children: Children, cpu: int, timeout: float) -> str:
    child = children.start(argv[0], argv, cpu=cpu, log_path=None)
    try:
        out, _ = child.proc.communicate(timeout=timeout)
    finally:
        children.stop(child)
    return out.decode(errors="replace")


def h2load(port: int, seconds: int, children: Children, cpu: int) -> float:
    out = run(
        [
            "h2load",
            "-c10",
            "-m10",
            f"-D{seconds}",
            "--warm-up-time=1",
            "-H",
            f":authority: {VHOST}",
            f"http://{HOST}:{port}/",
        ],
        children,
        cpu,
        seconds + 30,
    )
    match = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
    failed = re.search(r"(\d+) failed, (\d+) errored", out)
    if match is None or failed is None or failed.group(1) != "0" or failed.group(2) != "0":
        raise SystemExit(f"h2load failed:\n{out}")
    return float(match.group(1))


def wrk(port: int, seconds: int, children: Children, cpu: int) -> float:
    run(
        ["wrk", "-t1", "-c100", "-d1s", "-H", f"Host: {VHOST}", f"http://{HOST}:{port}/"],
        children,
        cpu,
        30,
    )
    out = run(
        ["wrk", "-t1", "-c100", f"-d{seconds}s", "-H", f"Host: {VHOST}", f"http://{HOST}:{port}/"],
        children,
        cpu,
        seconds + 30,
    )
    match = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    if match is None or "Non-2xx" in out:
        raise SystemExit(f"wrk failed:\n{out}")
    return float(match.group(1))


def upload(port: int, body: Path, http2: bool, children: Children, cpu: int) -> float:
    """MiB/s for one upload of *body* (curl's own upload speed)."""
    out = run(
        [
            "curl",
            "-sS",
            "--http2-prior-knowledge" if http2 else "--http1.1",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{speed_upload}",
            "--data-binary",
            f"@{body}",
            "-H",
            f"Host: {VHOST}",
            f"http://{HOST}:{port}/upload",
        ],
        children,
        cpu,
        300,
    )
    code, speed = out.split()
    if code != "200":
        raise SystemExit(f"upload failed: {out}")
    return float(speed) / (1024 * 1024)


def grpc_load(
    target: str, authority: str | None, seconds: int, children: Children, cpu: int
) -> dict:
    argv = [
        sys.executable,
        str(PEERS / "grpc_load.py"),
        "--target",
        target,
        "--duration",
        str(seconds),
    ]
    if authority:
        argv += ["--authority", authority]
    out = run(argv, children, cpu, seconds + 60)
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise SystemExit(f"grpc load failed:\n{out}") from None


def start_grpc_nginx(tmp: Path, children: Children, backend: int, cpu: int) -> int:
    port = free_port()
    config = textwrap.dedent(
        f"""\
        daemon off;
        master_process off;
        worker_processes 1;
        pid {tmp / "grpc-nginx.pid"};
        error_log stderr warn;
        events {{ worker_connections 4096; }}
        http {{
            access_log off;
            client_body_temp_path {tmp}/cb; proxy_temp_path {tmp}/px; fastcgi_temp_path {tmp}/fc;
            uwsgi_temp_path {tmp}/uw; scgi_temp_path {tmp}/sc;
            upstream grpcs {{ server {HOST}:{backend}; keepalive 16; }}
            server {{
                listen {HOST}:{port} http2;
                location / {{ grpc_pass grpc://grpcs; }}
            }}
        }}
        """
    )
    start_nginx(tmp, children, "grpc-nginx", lambda wd: config, cpu)
    time.sleep(0.5)
    return port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--upload-mib", type=int, default=200)
    parser.add_argument("--proxy-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--tenantgw-args", default="")
    args = parser.parse_args()
    settings = Settings(args.duration, 1, 100, args.load_cpu, args.proxy_cpu)
    load, proxy, seconds = args.load_cpu, args.proxy_cpu, args.duration
    rows: list[tuple[str, str]] = []
    with temp_dir(False) as tmp, Children(not args.no_pin) as children:
        backend = start_backend(tmp, children, load)
        grpc_port = free_port()
        children.start(
            "grpc-backend",
            [sys.executable, str(PEERS / "grpc_echo_server.py"), "--port", str(grpc_port)],
            cpu=load,
            log_path=tmp / "grpc-backend.log",
        )
        ctx = Context(tmp, backend, settings, children, shlex.split(args.tenantgw_args))
        # One tenantgw for everything: the HTTP tenant (body limit raised for
        # the upload) and the gRPC tenant, from one manifest directory.
        manifests = tenant_manifests(backend).replace("1048576", str(4 << 30))
        started = start_tenantgw(ctx)
        (tmp / "tenants" / "bench.yaml").write_text(manifests + grpc_manifests(grpc_port))
        assert started.ready is not None
        wait_until("tenantgw", started.child, started.ready, READY_TIMEOUT)
        port = started.port
        wait_until("tenantgw proxying", started.child, lambda: proxies_backend(port), READY_TIMEOUT)
        time.sleep(2.5)  # the directory source polls: the gRPC tenant is in

        http1 = wrk(port, seconds, children, load)
        http2 = h2load(port, seconds, children, load)
        rows.append(("HTTP/1.1, wrk -t1 -c100", f"{http1:,.0f} req/s"))
        rows.append(("HTTP/2 (h2c), h2load -c10 -m10", f"{http2:,.0f} req/s"))
        rows.append(("h2load / wrk", f"**{http2 / http1:.2f}**"))

        body = tmp / "upload.bin"
        with open(body, "wb") as f:
            f.truncate(args.upload_mib << 20)
        up1 = upload(port, body, False, children, load)
        up2 = upload(port, body, True, children, load)
        rows.append((f"upload {args.upload_mib} MiB, HTTP/1.1", f"{up1:,.0f} MiB/s"))
        rows.append((f"upload {args.upload_mib} MiB, HTTP/2", f"{up2:,.0f} MiB/s"))
        rows.append(("upload HTTP/2 / HTTP/1.1", f"**{up2 / up1:.2f}**"))

        direct = grpc_load(f"{HOST}:{grpc_port}", None, seconds, children, load)
        through = grpc_load(f"{HOST}:{port}", GRPC_HOST, seconds, children, load)
        children.stop(started.child)
        nginx_port = start_grpc_nginx(tmp, children, grpc_port, proxy)
        via_nginx = grpc_load(f"{HOST}:{nginx_port}", None, seconds, children, load)
        for name, result in (
            ("gRPC unary, direct", direct),
            ("gRPC unary, tenantgw", through),
            ("gRPC unary, nginx grpc_pass", via_nginx),
        ):
            flag = f" ({result['errors']} errors)" if result["errors"] else ""
            rows.append((name, f"{result['rps']:,.0f} calls/s{flag}"))
        rows.append(("gRPC tenantgw / direct", f"**{through['rps'] / direct['rps']:.2f}**"))
        rows.append(("gRPC tenantgw / nginx", f"**{through['rps'] / via_nginx['rps']:.2f}**"))
    print("\n| measurement | result |\n|---|---:|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
