#!/usr/bin/env python3
"""
tenantgw's HTTP/2 front against its HTTP/1.1 front, in one run, on one gateway.

Issue 11's three ratios, each HTTP/2 over HTTP/1.1 on the same listener
(h2c prior knowledge on --http) to the same nginx backend, pinned as
proxy_throughput.py pins (the gateway on --proxy-cpu, load and backend on
--load-cpu):

  1. small requests: h2load -c10 -m10 against wrk -t1 -c100 (the same 100
     requests in flight);
  2. a large upload (--body-mib, 200 by default) with curl, to an nginx
     that reads the whole body;
  3. a large download of the same size with curl, from nginx serving a file.

    .venv/bin/python benchmarks/http2_front.py [--duration 8] [--body-mib 200] [--rounds 3]
        [--no-pin]

On a shared machine one pair of runs says little (the load of other work
changes within seconds), so each measurement is --rounds pairs, HTTP/1.1
then HTTP/2 back to back, and what is reported is the median of the
pairs' ratios, with every pair's ratio beside it.

Needs h2load (nghttp2-client), wrk, nginx and curl.  benchmarks/http2_grpc.py
measures the first two with gRPC added.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from http2_grpc import h2load, run, upload, wrk  # noqa: E402
from proxy_throughput import (  # noqa: E402
    HOST,
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


def start_backend(tmp: Path, children: Children, cpu: int, body_mib: int) -> int:
    """nginx: "hello" on /, /upload read in full before a 200, /files/big.bin of *body_mib*."""
    files = tmp / "files"
    files.mkdir()
    with open(files / "big.bin", "wb") as f:
        f.truncate(body_mib << 20)
    port, sink = free_port(), free_port()
    block = textwrap.dedent(
        f"""\
                location / {{ return 200 "hello\\n"; }}
                location /files/ {{ alias {files}/; }}
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


def download(port: int, size: int, http2: bool, children: Children, cpu: int) -> float:
    """MiB/s for one download of /files/big.bin (curl's own download speed)."""
    out = run(
        [
            "curl",
            "-sS",
            "--http2-prior-knowledge" if http2 else "--http1.1",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download} %{speed_download}",
            "-H",
            f"Host: {VHOST}",
            f"http://{HOST}:{port}/files/big.bin",
        ],
        children,
        cpu,
        300,
    )
    code, got, speed = out.split()
    if code != "200" or int(got) != size:
        raise SystemExit(f"download failed: {out}")
    return float(speed) / (1024 * 1024)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1].strip())
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--body-mib", type=int, default=200)
    parser.add_argument("--proxy-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--tenantgw-args", default="")
    args = parser.parse_args()
    settings = Settings(args.duration, 1, 100, args.load_cpu, args.proxy_cpu)
    load, seconds, mib = args.load_cpu, args.duration, args.body_mib
    rows: list[tuple[str, str]] = []
    with temp_dir(False) as tmp, Children(not args.no_pin) as children:
        backend = start_backend(tmp, children, load, mib)
        ctx = Context(tmp, backend, settings, children, shlex.split(args.tenantgw_args))
        started = start_tenantgw(ctx)
        # The body limit raised for the upload.
        manifests = tenant_manifests(backend).replace("1048576", str(4 << 30))
        (tmp / "tenants" / "bench.yaml").write_text(manifests)
        assert started.ready is not None
        wait_until("tenantgw", started.child, started.ready, READY_TIMEOUT)
        port = started.port
        wait_until("tenantgw proxying", started.child, lambda: proxies_backend(port), READY_TIMEOUT)

        body = tmp / "upload.bin"
        with open(body, "wb") as f:
            f.truncate(mib << 20)
        pairs: dict[str, list[tuple[float, float]]] = {"small": [], "upload": [], "download": []}
        for _ in range(args.rounds):
            pairs["small"].append(
                (wrk(port, seconds, children, load), h2load(port, seconds, children, load))
            )
            pairs["upload"].append(
                (
                    upload(port, body, False, children, load),
                    upload(port, body, True, children, load),
                )
            )
            pairs["download"].append(
                (
                    download(port, mib << 20, False, children, load),
                    download(port, mib << 20, True, children, load),
                )
            )
        labels = {
            "small": ("wrk -t1 -c100", "h2load -c10 -m10", "req/s", "h2load / wrk"),
            "upload": (f"upload {mib} MiB", f"upload {mib} MiB", "MiB/s", "upload"),
            "download": (f"download {mib} MiB", f"download {mib} MiB", "MiB/s", "download"),
        }
        for key, results in pairs.items():
            one, two, unit, ratio = labels[key]
            ratios = [h2 / h1 for h1, h2 in results]
            each = ", ".join(f"{r:.2f}" for r in ratios)
            h1s = statistics.median(h1 for h1, _ in results)
            h2s = statistics.median(h2 for _, h2 in results)
            rows.append((f"HTTP/1.1, {one} (median)", f"{h1s:,.0f} {unit}"))
            rows.append((f"HTTP/2, {two} (median)", f"{h2s:,.0f} {unit}"))
            rows.append(
                (
                    f"{ratio} HTTP/2 / HTTP/1.1, median of pairs",
                    f"**{statistics.median(ratios):.2f}** ({each})",
                )
            )
    print("\n| measurement | result |\n|---|---:|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
