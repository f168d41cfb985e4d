"""
How ``--workers N`` would scale on a machine with cores to spare, measured on
one without them.

On this project's 2-core VM wrk and the nginx backend need most of a core
themselves, so a second worker competes with the load generator and req/s
cannot show what it adds.  What can be measured here is what decides
scaling where cores are free:

  - the CPU each request costs a worker (``utime + stime`` of every worker
    process, from /proc, per completed request): if a second worker made
    each request dearer (a shared lock, a thundering herd on accept, cache
    fights), adding cores would not add throughput;
  - how evenly the connections spread: the busiest worker's share of the
    workers' CPU (1/N is even), since the busiest worker saturates first.

The projection is ``N * cost(1) / cost(N) * (1/N) / busiest share``: N when a
request costs the same with N workers and the load spreads evenly.  Issue 15
asks for >= 1.8 at N = 2.

Run (needs wrk and nginx; nothing is pinned):

    python benchmarks/workers_scaling.py [--duration 8] [--connections 50]

It prints one line per N and the projection; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import proxy_throughput as bench

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(child) for child in text)
    return found


def workers(supervisor: int, count: int) -> list[int]:
    """The worker processes: the supervisor itself when there is only one."""
    if count == 1:
        return [supervisor]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = children_of(supervisor)
        if len(found) >= count:
            return found
        time.sleep(0.2)
    raise bench.StartError(f"{count} workers never appeared under pid {supervisor}")


def measure(ctx: bench.Context, count: int, duration: int) -> tuple[float, float, float]:
    """(requests per second, worker CPU seconds per 1,000 requests, busiest share)."""
    ctx.tenantgw_args = ["--workers", str(count)] if count > 1 else []
    started = bench.start_tenantgw(ctx)
    try:
        assert started.ready is not None
        bench.wait_until("tenantgw readiness", started.child, started.ready, bench.READY_TIMEOUT)
        pids = workers(started.child.proc.pid, count)
        bench.run_wrk(ctx.children, ctx.settings, started.port, ctx.settings.warmup)
        before = {pid: cpu_seconds(pid) for pid in pids}
        output = bench.run_wrk(ctx.children, ctx.settings, started.port, duration)
        used = {pid: cpu_seconds(pid) - before[pid] for pid in pids}
    finally:
        ctx.children.stop(started.child)
    result = bench.parse_wrk(output, f"workers{count}", f"{count} worker(s)")
    if result.failure is not None or result.error_count:
        raise bench.WrkError(f"{count} workers: {result.failure or bench.describe_errors(result)}")
    requests = result.rps * duration
    total = sum(used.values())
    return result.rps, total / requests * 1000, max(used.values()) / total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2, help="N compared with 1")
    args = parser.parse_args(argv)
    settings = bench.Settings(
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        load_cpu=1,
        proxy_cpu=0,
    )
    with bench.temp_dir(False) as tmp, bench.Children(cpu_pinning=False) as children:
        backend = bench.start_backend(tmp, children, settings)
        ctx = bench.Context(tmp, backend, settings, children, [])
        figures = {n: measure(ctx, n, args.duration) for n in (1, args.workers)}
    for n, (rps, cost, share) in figures.items():
        print(
            f"{n} worker(s): {rps:,.0f} req/s here, {cost * 1000:.1f} ms of worker CPU"
            f" per 1,000 requests, busiest worker {share:.0%} of the workers' CPU"
        )
    n = args.workers
    cost_1, cost_n, share_n = figures[1][1], figures[n][1], figures[n][2]
    projected = n * cost_1 / cost_n * (1 / n) / share_n
    print(
        f"projected scaling at {n} workers on free cores: {projected:.2f}x"
        f" (request cost {cost_1 / cost_n:.2f}x of one worker's, spread {1 / n / share_n:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
