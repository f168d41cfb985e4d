"""CPU instructions per proxied request, from valgrind --tool=callgrind.

req/s on a shared machine moves with whatever else runs; instruction counts do not.
This runs the gateway (or the lean peer) under callgrind twice, with the same setup as
benchmarks/proxy_throughput.py: once answering only the readiness probe (startup and
shutdown, the baseline) and once proxying --requests more GETs on one keep-alive
connection; the difference divided by --requests is the cost of one request.

With ``--protocol h2`` the requests are HTTP/2 instead (h2c prior knowledge on the same
listener, driven by ``h2load -c1 -m10``, outside callgrind): the cost of one request on
tenantgw's HTTP/2 front.

Usage: ``python benchmarks/callgrind_proxy.py [--requests 2000] [--target tenantgw|lean]
[--protocol http1|h2] [--tenantgw-args "--http1-front native"]``
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import proxy_throughput as bench

STARTUP_TIMEOUT = 300.0  # callgrind runs Python 20-50x slower; startup is the slow part


class CallgrindChildren(bench.Children):
    """Children whose proxy under test (the process named *wrapped*) runs under callgrind."""

    def __init__(self, wrapped: str, out_dir: Path) -> None:
        super().__init__(cpu_pinning=False)
        self.wrapped, self.out_dir = wrapped, out_dir

    def start(self, name: str, argv: Sequence[str], **kw: object) -> bench.Child:  # type: ignore[override]
        if name == self.wrapped:
            argv = [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={self.out_dir / 'callgrind.out.%p'}",
                *argv,
            ]
            # One hash seed for every run: string hashes decide dict and set
            # layouts, and so part of the instruction count.
            given = kw.pop("env", None)
            env = dict(given if isinstance(given, dict) else os.environ)
            env["PYTHONHASHSEED"] = "0"
            kw["env"] = env
        return super().start(name, argv, **kw)  # type: ignore[arg-type]


def drive(port: int, count: int) -> None:
    """*count* GETs on one keep-alive connection, each checked for the backend's answer."""
    conn = http.client.HTTPConnection(bench.HOST, port, timeout=120)
    try:
        for _ in range(count):
            conn.request("GET", "/", headers={"Host": bench.VHOST})
            response = conn.getresponse()
            if response.status != 200 or response.read() != bench.BACKEND_BODY:
                raise RuntimeError(f"unexpected answer {response.status}")
    finally:
        conn.close()


def drive_h2(port: int, count: int) -> None:
    """*count* GETs over HTTP/2 (h2c prior knowledge), 10 streams in flight on one connection."""
    out = subprocess.run(
        [
            "h2load",
            f"-n{count}",
            "-c1",
            "-m10",
            "-H",
            f":authority: {bench.VHOST}",
            f"http://{bench.HOST}:{port}/",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    ).stdout
    if not re.search(
        rf"requests: {count} total, {count} started, {count} done, {count} succeeded", out
    ):
        raise RuntimeError("h2load did not complete every request:\n" + out)


def instructions(
    target: str, requests: int, protocol: str = "http1", tenantgw_args: Sequence[str] = ()
) -> int:
    """Instructions callgrind counted in the proxy process over a run of *requests*."""
    settings = bench.Settings(1, 0, 1, 1, 0)
    with bench.temp_dir(False) as tmp:
        name = "tenantgw" if target == "tenantgw" else "lean_proxy"
        with CallgrindChildren(name, tmp) as children:
            backend = bench.start_backend(tmp, children, settings)
            ctx = bench.Context(tmp, backend, settings, children, list(tenantgw_args))
            if target == "tenantgw":
                started = bench.start_tenantgw(ctx)
            else:
                started = bench.start_twisted_peer(ctx, "lean_proxy.py")
            if started.ready is not None:
                bench.wait_until("readiness", started.child, started.ready, STARTUP_TIMEOUT)
            port = started.port
            bench.wait_until(
                "proxying", started.child, lambda: bench.proxies_backend(port), STARTUP_TIMEOUT
            )
            if protocol == "h2":
                if requests:
                    drive_h2(port, requests)
            else:
                drive(port, requests)
            children.stop(started.child)
            log = (started.child.log_path or Path("/nonexistent")).read_text(errors="replace")
    match = re.search(r"Collected : (\d+)", log)
    if match is None:
        raise RuntimeError("callgrind printed no total:\n" + log[-2000:])
    return int(match.group(1))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--target", choices=("tenantgw", "lean"), default="tenantgw")
    parser.add_argument("--protocol", choices=("http1", "h2"), default="http1")
    parser.add_argument(
        "--tenantgw-args", default="", help="extra twistd tenantgw options, shell-quoted"
    )
    args = parser.parse_args(argv)
    extra = shlex.split(args.tenantgw_args)
    baseline = instructions(args.target, 0, args.protocol, extra)
    loaded = instructions(args.target, args.requests, args.protocol, extra)
    per_request = (loaded - baseline) / args.requests
    print(f"{args.target}: baseline (startup, one probe) {baseline:,} instructions")
    print(f"{args.target}: with {args.requests} requests {loaded:,} instructions")
    print(f"{args.target} ({args.protocol}): {per_request:,.0f} instructions per proxied request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
