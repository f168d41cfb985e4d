"""
A whole gateway on a big cluster: N tenants (default 5,000) served from the
project's test API server, measured as an operator would see them.

- cold start to ready: from exec of ``twistd tenantgw --source kubernetes``
  to ``/readyz`` answering 200 (imports, every kind listed in pages, the
  first compile, the serving tree);
- memory once ready: VmRSS and its peak VmHWM;
- request p99 of one tenant under wrk (``-c50``), idle and then while
  ``--rate`` other tenants' ConfigMaps change per second (default 50), and
  the ratio of the two (issue 14's target: within 1.2x);
- how many of those changes the gateway applied, and how long after the
  last one it had caught up (read from ``/api/tenants``), so a gateway
  that falls behind cannot look fast.

The API server runs in this process (its own threads), the gateway and the
nginx backend as children: the gateway pinned to one core, wrk, nginx and
this script on the other.

    .venv/bin/python benchmarks/cluster_scale.py [--tenants 5000] [--rate 50]
        [--duration 10] [--no-pin]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import proxy_throughput as bench

from tenantgw.testing.fake_apiserver import FakeAPIServer

TENANT_YAML = """\
hosts: [{ns}.example.com]
quota: {{requestsPerSecond: 100000, burst: 100000}}
routes:
  - name: api
    match: {{path: /api-{version}}}
    backends: [{{service: web, port: 80}}]
  - name: all
    backends: [{{service: web, port: 80}}]
"""


def tenant_name(i: int) -> str:
    return f"tenant-{i:05d}"


def tenant_configmap(i: int, version: int = 0) -> dict[str, Any]:
    ns = tenant_name(i)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "tenant", "namespace": ns, "labels": {"tenantgw.io/tenant": "true"}},
        "data": {"tenant.yaml": TENANT_YAML.format(ns=ns, version=version)},
    }


def tenant_objects(i: int, backend_port: int) -> list[dict[str, Any]]:
    ns = tenant_name(i)
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": ns,
                "annotations": {"tenantgw.io/allowed-hosts": f"{ns}.example.com"},
            },
        },
        tenant_configmap(i),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": backend_port}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "web-1",
                "namespace": ns,
                "labels": {"kubernetes.io/service-name": "web"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": backend_port, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
        },
    ]


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of *pid*, in bytes."""
    found = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) * 1024
    return found


def wrk(
    children: bench.Children, settings: bench.Settings, port: int, host: str, seconds: int
) -> bench.Result:
    # A request held up by a compile must count in the latency, not vanish
    # as a wrk timeout (2 s by default).
    output = bench.run_wrk(children, settings, port, seconds, host=host, timeout=30)
    return bench.parse_wrk(output, "tenantgw", host)


class Changer(threading.Thread):
    """Changes one tenant's ConfigMap (round robin, skipping tenant 0) *rate* times a second."""

    def __init__(self, server: FakeAPIServer, tenants: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.server, self.tenants, self.rate = server, tenants, rate
        self.stopping = threading.Event()
        self.changed: dict[int, int] = {}  # tenant -> the version it was given last

    def run(self) -> None:
        started = time.monotonic()
        sent = 0
        while not self.stopping.is_set():
            i = 1 + sent % (self.tenants - 1)
            version = 1 + sent // (self.tenants - 1)
            self.server.update(tenant_configmap(i, version))
            self.changed[i] = version
            sent += 1
            pause = started + sent / self.rate - time.monotonic()
            if pause > 0:
                self.stopping.wait(pause)


def applied(admin_port: int, changed: dict[int, int]) -> int:
    """How many of the changed tenants the gateway serves with their last version."""
    # A gateway busy compiling answers late, and its answer still counts.
    status, body = bench.http_get(admin_port, "/api/tenants", host=bench.HOST, timeout=120)
    if status != 200:
        return -1
    paths = {t["namespace"]: {r["path"] for r in t["routes"]} for t in json.loads(body)["tenants"]}
    return sum(
        1 for i, version in changed.items() if f"/api-{version}" in paths.get(tenant_name(i), ())
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = bench.Settings(
        duration=args.duration,
        warmup=2,
        connections=50,
        load_cpu=0,
        proxy_cpu=1,
    )
    figures: dict[str, Any] = {"tenants": args.tenants, "rate": args.rate}
    with tempfile.TemporaryDirectory() as tmp_name, bench.Children(args.pin) as children:
        tmp = Path(tmp_name)
        backend = bench.start_backend(tmp, children, settings)
        server = FakeAPIServer(bookmark_interval=5.0)
        server.start()
        try:
            for i in range(args.tenants):
                for obj in tenant_objects(i, backend):
                    server.create(obj)
            kubeconfig = server.write_kubeconfig(str(tmp / "kubeconfig"))
            port, admin, https = bench.free_port(), bench.free_port(), bench.free_port()
            argv = [
                sys.executable,
                "-c",
                "import sys; from twisted.scripts.twistd import run; sys.exit(run())",
                "-n",
                "--pidfile=",
                *args.twistd_option,
                "tenantgw",
                "--source=kubernetes",
                f"--kubeconfig={kubeconfig}",
                f"--http=tcp:{port}:interface={bench.HOST}",
                f"--https=tcp:{https}:interface={bench.HOST}",
                f"--admin=tcp:{admin}:interface={bench.HOST}",
                "--access-log=off",
                "--leader-election-namespace=tenantgw-system",
            ]
            env = dict(os.environ)
            paths = [str(bench.REPO), str(bench.REPO / "src"), env.get("PYTHONPATH", "")]
            env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
            started = time.monotonic()
            child = children.start(
                "tenantgw",
                argv,
                cpu=settings.proxy_cpu,
                log_path=tmp / "tenantgw.log",
                cwd=tmp,
                env=env,
            )
            bench.wait_until(
                "tenantgw ready",
                child,
                lambda: bench.http_get(admin, "/readyz", host=bench.HOST)[0] == 200,
                args.ready_timeout,
            )
            figures["cold_start_to_ready_s"] = round(time.monotonic() - started, 2)
            figures.update({k: v for k, v in memory(child.proc.pid).items()})
            print(
                f"ready after {figures['cold_start_to_ready_s']} s;"
                f" RSS {figures['VmRSS'] / 2**20:.0f} MiB, peak {figures['VmHWM'] / 2**20:.0f} MiB",
                flush=True,
            )
            host = f"{tenant_name(0)}.example.com"
            status, _ = bench.http_get(port, "/", host=host)
            if status != 200:
                raise SystemExit(
                    f"tenant 0 answers {status}:\n{bench.log_tail(tmp / 'tenantgw.log')}"
                )
            wrk(children, settings, port, host, settings.warmup)
            idle = wrk(children, settings, port, host, settings.duration)
            print(f"idle: {idle.rps:,.0f} req/s, p99 {idle.p99_ms:.2f} ms", flush=True)
            changer = Changer(server, args.tenants, args.rate)
            changer.start()
            try:
                busy = wrk(children, settings, port, host, settings.duration)
            finally:
                changer.stopping.set()
                changer.join()
            stopped = time.monotonic()
            figures["changes_sent"] = len(changer.changed)
            while True:  # until the gateway has caught up with every change
                done = applied(admin, changer.changed)
                if done == len(changer.changed) or time.monotonic() - stopped > args.catch_up:
                    break
                time.sleep(0.5)
            figures["changes_applied"] = done
            figures["caught_up_after_s"] = round(time.monotonic() - stopped, 1)
            figures["idle"] = {
                "rps": idle.rps,
                "p99_ms": idle.p99_ms,
                "p50_ms": idle.p50_ms,
                "errors": idle.socket_errors,
            }
            figures["changing"] = {
                "rps": busy.rps,
                "p99_ms": busy.p99_ms,
                "p50_ms": busy.p50_ms,
                "errors": busy.socket_errors,
            }
            figures["rps_ratio"] = round(busy.rps / idle.rps, 2) if idle.rps else None
            figures["p99_ratio"] = round(busy.p99_ms / idle.p99_ms, 2) if idle.p99_ms else None
            figures["memory_after"] = memory(child.proc.pid)
            print(
                f"{args.rate:g} tenant changes/s: {busy.rps:,.0f} req/s"
                f" ({figures['rps_ratio']}x idle), p99 {busy.p99_ms:.2f} ms"
                f" ({figures['p99_ratio']}x idle), errors {busy.socket_errors or 'none'}; {figures['changes_applied']} of"
                f" {figures['changes_sent']} changed tenants applied"
                f" {figures['caught_up_after_s']} s after the last change",
                flush=True,
            )
            children.stop(child)
        finally:
            server.stop()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=50.0, help="tenant changes per second")
    parser.add_argument("--duration", type=int, default=10, help="seconds of each wrk run")
    parser.add_argument("--ready-timeout", type=float, default=600.0)
    parser.add_argument(
        "--catch-up", type=float, default=120.0, help="seconds to wait for changes to apply"
    )
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument(
        "--twistd-option",
        action="append",
        default=[],
        help="passed to twistd before the plugin, e.g. --twistd-option=--profile=out"
        " --twistd-option=--profiler=cprofile --twistd-option=--savestats",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures = run(args)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
