#!/usr/bin/env python3
"""What sharing quotas through Redis costs tenantgw, measured in one run.

tenantgw is measured twice against the same nginx backend, with the
benchmark tenant of proxy_throughput.py (tenant-wide and per-client rate
limits on every request, never rejecting): once with its in-process limiter,
once with ``--redis`` (one EVALSHA over both keys per request).  Redis runs
on the load core with wrk and the backend, like any other backend service;
tenantgw alone has the proxy core.  The ratio printed is Redis req/s over
in-process req/s; the target is >= 0.75.

    python benchmarks/quota_overhead.py [--quick] [--duration N] [--connections N]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import proxy_throughput as bench


def start_redis(tmp: Path, children: bench.Children, cpu: int) -> str:
    """redis-server without persistence on a UNIX socket; its URL once it answers PING."""
    binary = shutil.which("redis-server") or shutil.which("valkey-server")
    if binary is None:
        raise bench.StartError("redis-server (or valkey-server) is required")
    path = tmp / "redis.sock"
    argv = [binary, "--port", "0", "--unixsocket", str(path), "--save", "", "--appendonly", "no"]
    child = children.start("redis", argv, cpu=cpu, log_path=tmp / "redis.log")

    def answers() -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(1)
                s.connect(str(path))
                s.sendall(b"PING\r\n")
                return s.recv(16) == b"+PONG\r\n"
        except OSError:
            return False

    bench.wait_until("redis-server", child, answers, bench.READY_TIMEOUT)
    return f"unix://{path}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per run")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections")
    parser.add_argument("--quick", action="store_true", help="3 s per run, 1 s warm-up")
    parser.add_argument("--proxy-cpu", type=int, default=0, help="CPU for tenantgw")
    parser.add_argument("--load-cpu", type=int, default=1, help="CPU for wrk, backend, Redis")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--wait-quiet", type=int, default=0, metavar="SECONDS")
    parser.add_argument("--targets", default="tenantgw")  # for bench.check_tools
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 3, 1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    problem = bench.check_tools(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    settings = bench.settings_from(args)
    results: list[bench.Result] = []
    with bench.temp_dir(False) as tmp, bench.Children(not args.no_pin) as children:
        try:
            print("starting backend nginx and redis-server", flush=True)
            backend_port = bench.start_backend(tmp, children, settings)
            redis_url = start_redis(tmp, children, settings.load_cpu)
        except bench.StartError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for key, name, extra in (
            ("tenantgw", "tenantgw, in-process quotas", []),
            ("redis", "tenantgw, Redis quotas", ["--redis", redis_url]),
        ):
            run_dir = tmp / key
            run_dir.mkdir()
            ctx = bench.Context(run_dir, backend_port, settings, children, extra)
            target = bench.Target(key, name, bench.start_tenantgw)
            results.append(bench.bench_target(ctx, target))
            time.sleep(0.5)
    print()
    print("| quotas | req/s | p50 | p99 | errors |")
    print("|---|---:|---:|---:|---|")
    for r in results:
        if r.failure is not None:
            print(f"| {r.name} | - | - | - | {r.failure} |")
        else:
            errors = bench.describe_errors(r) if r.error_count else "0"
            print(f"| {r.name} | {r.rps:,.0f} | {r.p50_ms:.2f} ms | {r.p99_ms:.2f} ms | {errors} |")
    local, shared = results
    if not (local.rps and shared.rps):
        return 1
    ratio = shared.rps / local.rps
    print(f"\nRedis / in-process throughput: {ratio:.2f} (cost {1 - ratio:.0%}; target <= 25%)")
    bad = any(r.failure is not None or r.error_count or bench.busy(r) for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
