"""Proxy throughput benchmark: tenantgw against Twisted and non-Twisted peers.

One run starts an nginx backend, then measures with wrk, one after the other, the
backend direct and each proxy in front of it (tenantgw, twisted.web's
ReverseProxyResource, a bare pooled twisted.web proxy, nginx and HAProxy), and prints
a Markdown table plus tenantgw's ratio to each peer.

Absolute figures depend on the machine; the ratios are what we track.  To keep them
meaningful every proxy runs alone on one core (``--proxy-cpu``) while wrk and the
backend share the other (``--load-cpu``), so a proxy never competes with its own load.

Usage: ``python benchmarks/proxy_throughput.py [--duration 10] [--connections 50]
[--quick] [--json PATH]``.  See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import http.client
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERS = HERE / "peers"

HOST = "127.0.0.1"
VHOST = "bench.local"
BACKEND_BODY = b"hello\n"

# Bounds for every wait loop: seconds, and the sleep between attempts.
READY_TIMEOUT = 30.0
POLL_INTERVAL = 0.1
STOP_TIMEOUT = 10.0

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

TARGET_KEYS = ("direct", "tenantgw", "tenantgw_log", "lean", "rpr", "bare", "nginx", "haproxy")


class StartError(Exception):
    """A target could not be started or never became ready; the run goes on without it."""


class WrkError(Exception):
    """wrk failed or printed something we cannot read; that target gets no figures."""


# --------------------------------------------------------------------------- processes


@dataclass
class Child:
    """A child process we own, started in its own session so its whole group can be killed."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path | None


class Children:
    """Owns every child process of the run and guarantees they are gone at the end.

    Children are started with ``start_new_session=True``: a Ctrl-C in the terminal then
    reaches only this script, which kills each child's process group in ``close()``
    (also forks such as nginx workers or twistd ``--workers``).
    """

    def __init__(self, cpu_pinning: bool) -> None:
        self._children: list[Child] = []
        self._pinning = cpu_pinning
        # Every session we created (session id = leader pid), live or not: their CPU use
        # is ours, everything else on the machine is interference.
        self.sessions: set[int] = set()

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def argv(self, argv: Sequence[str], cpu: int | None) -> list[str]:
        """Prefix *argv* with ``taskset -c CPU`` when pinning is on."""
        if self._pinning and cpu is not None:
            return ["taskset", "-c", str(cpu), *argv]
        return list(argv)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cpu: int | None,
        log_path: Path | None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Child:
        """Start *argv* pinned to *cpu*, stdout and stderr to *log_path* (or a pipe)."""
        out: IO[bytes] | int
        out = open(log_path, "wb") if log_path is not None else subprocess.PIPE  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                self.argv(argv, cpu),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            if not isinstance(out, int):
                out.close()
        child = Child(name, proc, log_path)
        self._children.append(child)
        self.sessions.add(proc.pid)
        return child

    def stop(self, child: Child) -> None:
        """SIGTERM the child's group, SIGKILL it if it has not exited in STOP_TIMEOUT."""
        if child in self._children:
            self._children.remove(child)
        _kill_group(child.proc, signal.SIGTERM)
        try:
            child.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            _kill_group(child.proc, signal.SIGKILL)
            child.proc.wait(timeout=STOP_TIMEOUT)
        # The leader is gone; make sure nothing it forked survives it.
        _kill_group(child.proc, signal.SIGKILL)

    def close(self) -> None:
        """Stop every child still running, newest first (proxies before the backend)."""
        for child in reversed(list(self._children)):
            with contextlib.suppress(Exception):
                self.stop(child)


def _die_with_parent() -> None:
    """In the child: get SIGKILL if this script dies without cleaning up (e.g. kill -9).

    ``finally`` covers exceptions and signals we handle; this covers the rest, on Linux.
    PR_SET_PDEATHSIG survives the exec of taskset and of the program taskset runs.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _kill_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt so the cleanup in ``finally`` runs."""
    raise KeyboardInterrupt(f"signal {signum}")


def free_port() -> int:
    """Ask the kernel for a free loopback port (released at once; the race is harmless here)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path | None, lines: int = 20) -> str:
    """Last lines of a child's log, to explain a failure without opening files."""
    if path is None or not path.exists():
        return ""
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return textwrap.indent("\n".join(text), "    | ")


# ------------------------------------------------------------------------ readiness


def http_get(
    port: int, path: str = "/", host: str = VHOST, timeout: float = 2
) -> tuple[int, bytes]:
    """One GET on a fresh connection; returns (status, body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_until(what: str, child: Child, check: Callable[[], bool], timeout: float) -> None:
    """Poll *check* until it is true, the child dies, or *timeout* passes (bounded both ways)."""
    deadline = time.monotonic() + timeout
    attempts = int(timeout / POLL_INTERVAL) + 1
    last_error = "no answer"
    for _ in range(attempts):
        code = child.proc.poll()
        if code is not None:
            raise StartError(f"{what}: exited with status {code}")
        try:
            if check():
                return
            last_error = "not ready yet"
        except (OSError, http.client.HTTPException) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_INTERVAL)
    raise StartError(f"{what}: not ready after {timeout:.0f} s ({last_error})")


def proxies_backend(port: int) -> bool:
    """True when a GET through *port* returns 200 with the backend's body."""
    status, body = http_get(port)
    return status == 200 and body == BACKEND_BODY


# ----------------------------------------------------------------------------- wrk


@dataclass
class Result:
    """One target's measurement; ``failure`` set means it has no figures."""

    key: str
    name: str
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    requests: int | None = None
    non_2xx_3xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    failure: str | None = None
    foreign_cpu: float | None = None

    @property
    def error_count(self) -> int:
        """Responses that were not 2xx/3xx plus socket-level errors."""
        return self.non_2xx_3xx + sum(self.socket_errors.values())


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(value: str) -> float:
    """wrk's latency ("812.00us", "1.20ms", "2.00s") in milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value)
    if match is None:
        raise ValueError(f"unrecognised wrk latency {value!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str, key: str, name: str) -> Result:
    """Extract req/s, p50, p99 and error counts from ``wrk --latency`` output."""
    result = Result(key, name)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    total = re.search(r"^\s+(\d+) requests in", output, re.M)
    if rps is None or p50 is None or p99 is None:
        raise WrkError("wrk output not understood:\n" + textwrap.indent(output, "    | "))
    result.rps = float(rps.group(1))
    result.p50_ms = _ms(p50.group(1))
    result.p99_ms = _ms(p99.group(1))
    result.requests = int(total.group(1)) if total else None
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result.non_2xx_3xx = int(non2xx.group(1)) if non2xx else 0
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sock:
        counts = dict(zip(("connect", "read", "write", "timeout"), map(int, sock.groups())))
        result.socket_errors = {k: v for k, v in counts.items() if v}
    return result


BUSY_THRESHOLD = 0.1  # CPUs used by other processes during a run before we flag it


def foreign_cpu_ticks(our_sessions: set[int]) -> dict[int, int]:
    """CPU ticks used so far by every user process that is not part of this benchmark.

    Pinning keeps our processes apart, not the rest of the machine: a test suite
    running next to us takes a core and halves a Twisted proxy's figures without any
    other sign.  Children's reaped time (cutime, cstime) is included, so short-lived
    processes count once their parent reaps them.  Kernel threads are left out: the
    softirq work they do here is mostly caused by our own traffic.
    """
    ticks: dict[int, int] = {}
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited meanwhile
        ppid, session = int(fields[1]), int(fields[3])
        if session in our_sessions or ppid == 2 or int(entry.name) == 2:
            continue
        ticks[int(entry.name)] = sum(int(f) for f in fields[11:15])
    return ticks


def foreign_cpu_used(before: dict[int, int], after: dict[int, int], seconds: float) -> float:
    """CPUs (CPU-seconds per second) other processes used between two snapshots."""
    delta = sum(t - before.get(pid, 0) for pid, t in after.items())
    return max(delta, 0) / os.sysconf("SC_CLK_TCK") / max(seconds, 0.001)


def wait_for_quiet(our_sessions: set[int], timeout: int) -> None:
    """Wait up to *timeout* s, in 1 s samples, until other processes leave the CPUs alone."""
    used = 0.0
    for _ in range(max(timeout, 1)):
        before = foreign_cpu_ticks(our_sessions)
        time.sleep(1.0)
        used = foreign_cpu_used(before, foreign_cpu_ticks(our_sessions), 1.0)
        if used <= BUSY_THRESHOLD:
            return
    print(f"    still busy after {timeout} s ({used:.2f} CPU used by others)", flush=True)


def busy(result: Result) -> bool:
    """Whether other processes took enough CPU during *result*'s run to distort it."""
    return result.foreign_cpu is not None and result.foreign_cpu > BUSY_THRESHOLD


@dataclass
class Settings:
    """What every wrk run uses, so all targets are measured the same way."""

    duration: int
    warmup: int
    connections: int
    load_cpu: int
    proxy_cpu: int
    wait_quiet: int = 0


def run_wrk(
    children: Children,
    settings: Settings,
    port: int,
    seconds: int,
    host: str = VHOST,
    timeout: int | None = None,
) -> str:
    """Run wrk against *port* for *seconds* and return its output.

    *timeout*: wrk's per-request timeout in seconds (its default is 2 s, and
    a slower answer is counted as an error, not in the latency).
    """
    argv = [
        "wrk",
        "-t1",
        f"-c{settings.connections}",
        f"-d{seconds}s",
        "--latency",
        *(["--timeout", f"{timeout}s"] if timeout is not None else []),
        "-H",
        f"Host: {host}",
        f"http://{HOST}:{port}/",
    ]
    child = children.start("wrk", argv, cpu=settings.load_cpu, log_path=None)
    try:
        out, _ = child.proc.communicate(timeout=seconds + 30 + (timeout or 0))
    finally:
        children.stop(child)
    text = out.decode(errors="replace")
    if child.proc.returncode != 0:
        raise WrkError(f"wrk exited with status {child.proc.returncode}:\n{text}")
    return text


def measure(children: Children, settings: Settings, key: str, name: str, port: int) -> Result:
    """Warm the target up, then measure it; warm-up figures are thrown away."""
    print(f"  {name}: warm-up {settings.warmup} s, measure {settings.duration} s", flush=True)
    if settings.wait_quiet:
        wait_for_quiet(children.sessions, settings.wait_quiet)
    try:
        if settings.warmup:
            run_wrk(children, settings, port, settings.warmup)
        before = foreign_cpu_ticks(children.sessions)
        started = time.monotonic()
        output = run_wrk(children, settings, port, settings.duration)
        elapsed = time.monotonic() - started
        result = parse_wrk(output, key, name)
        result.foreign_cpu = foreign_cpu_used(before, foreign_cpu_ticks(children.sessions), elapsed)
    except WrkError as exc:
        print(f"{key}: {exc}", file=sys.stderr, flush=True)
        return Result(key, name, failure="wrk failed")
    if result.failure is None:
        flag = f", ERRORS {describe_errors(result)}" if result.error_count else ""
        if busy(result):
            flag += f", BUSY MACHINE: other processes used {result.foreign_cpu:.2f} CPU"
        print(
            f"    {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms,"
            f" p99 {result.p99_ms:.2f} ms{flag}",
            flush=True,
        )
    return result


# ------------------------------------------------------------------------- targets


@dataclass
class Started:
    """A proxy process just started; *ready*, if set, must hold before we probe proxying."""

    child: Child
    port: int
    ready: Callable[[], bool] | None = None


@dataclass
class Context:
    """What the target starters share: the temp dir, the backend, pinning and children."""

    tmp: Path
    backend_port: int
    settings: Settings
    children: Children
    tenantgw_args: list[str]


def nginx_config(workdir: Path, port: int, server_block: str, upstream: str = "") -> str:
    """An nginx config that needs no root: every path lives in *workdir*, one process.

    ``master_process off`` keeps nginx a single process so the pinning and the kill are
    exact; access logs are off because neither the backend nor the peer should pay
    for them when the Twisted peers don't; errors go to stderr, i.e. the child's log.
    """
    temp_paths = "\n".join(
        f"    {kind}_temp_path {workdir / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""\
daemon off;
master_process off;
worker_processes 1;
pid {workdir / "nginx.pid"};
error_log stderr warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
{temp_paths}
    default_type text/plain;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
{upstream}
    server {{
        listen {HOST}:{port} default_server;
{server_block}
    }}
}}
"""


def start_nginx(
    tmp: Path, children: Children, name: str, config: Callable[[Path], str], cpu: int
) -> tuple[Child, Path]:
    """Write ``config(workdir)`` to tmp/name/nginx.conf and start nginx on it."""
    workdir = tmp / name
    workdir.mkdir()
    conf = workdir / "nginx.conf"
    conf.write_text(config(workdir))
    # -e: nginx opens its compiled-in error log (under /var/log) before reading the config.
    argv = ["nginx", "-p", f"{workdir}/", "-c", str(conf), "-e", "stderr"]
    return children.start(name, argv, cpu=cpu, log_path=workdir / "stdout.log"), workdir


def start_backend(tmp: Path, children: Children, settings: Settings) -> int:
    """The backend every target proxies to: nginx answering 200 "hello\\n", on the load core."""
    port = free_port()
    body = BACKEND_BODY.decode().replace("\n", "\\n")
    block = f'        location / {{\n            return 200 "{body}";\n        }}'
    child, _ = start_nginx(
        tmp, children, "backend", lambda wd: nginx_config(wd, port, block), settings.load_cpu
    )
    try:
        wait_until("backend nginx", child, lambda: proxies_backend(port), READY_TIMEOUT)
    except StartError as exc:
        raise StartError(f"{exc}\n{log_tail(child.log_path)}") from None
    return port


def start_nginx_proxy(ctx: Context) -> Started:
    """nginx as reverse proxy, with an upstream keepalive pool like a production setup."""
    port = free_port()
    upstream = (
        f"    upstream backend {{\n        server {HOST}:{ctx.backend_port};\n"
        "        keepalive 64;\n    }"
    )
    block = textwrap.indent(
        "location / {\n"
        "    proxy_pass http://backend;\n"
        "    proxy_http_version 1.1;\n"
        '    proxy_set_header Connection "";\n'
        "}",
        " " * 8,
    )
    child, _ = start_nginx(
        ctx.tmp,
        ctx.children,
        "nginx-proxy",
        lambda wd: nginx_config(wd, port, block, upstream),
        ctx.settings.proxy_cpu,
    )
    return Started(child, port)


def start_haproxy(ctx: Context) -> Started:
    """HAProxy in HTTP mode, one thread, reusing upstream connections."""
    port = free_port()
    workdir = ctx.tmp / "haproxy"
    workdir.mkdir()
    conf = workdir / "haproxy.cfg"
    conf.write_text(
        textwrap.dedent(
            f"""\
            global
                nbthread 1
                maxconn 4096

            defaults
                mode http
                option http-keep-alive
                http-reuse always
                timeout connect 5s
                timeout client 30s
                timeout server 30s

            frontend bench
                bind {HOST}:{port}
                default_backend backend

            backend backend
                server nginx {HOST}:{ctx.backend_port}
            """
        )
    )
    argv = ["haproxy", "-db", "-f", str(conf)]
    child = ctx.children.start(
        "haproxy", argv, cpu=ctx.settings.proxy_cpu, log_path=workdir / "stdout.log"
    )
    return Started(child, port)


def start_twisted_peer(ctx: Context, script: str, extra: Sequence[str] = ()) -> Started:
    """One of the Twisted peers in benchmarks/peers/, on the same interpreter as this script."""
    port = free_port()
    name = Path(script).stem
    argv = [
        sys.executable,
        str(PEERS / script),
        "--port",
        str(port),
        "--backend-port",
        str(ctx.backend_port),
        *extra,
    ]
    child = ctx.children.start(
        name, argv, cpu=ctx.settings.proxy_cpu, log_path=ctx.tmp / f"{name}.log"
    )
    return Started(child, port)


def tenant_manifests(backend_port: int) -> str:
    """Namespace, Tenant ConfigMap, Service and EndpointSlice for the one benchmark tenant.

    Limits are far above what one core can serve, so access and quota checks run on
    every request without ever rejecting one.  The namespace allows ``bench.local``
    and sets high ceilings so no default ceiling can clamp the quota.
    """
    return textwrap.dedent(
        f"""\
        apiVersion: v1
        kind: Namespace
        metadata:
          name: bench
          labels:
            kubernetes.io/metadata.name: bench
          annotations:
            tenantgw.io/allowed-hosts: {VHOST}
            tenantgw.io/max-requests-per-second: "1000000"
            tenantgw.io/max-burst: "1000000"
            tenantgw.io/max-concurrent-requests: "100000"
            tenantgw.io/max-request-body-bytes: "1048576"
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: tenant
          namespace: bench
          creationTimestamp: "2024-01-01T00:00:00Z"
          labels:
            tenantgw.io/tenant: "true"
        data:
          tenant.yaml: |
            hosts: [{VHOST}]
            quota:
              requestsPerSecond: 1000000
              burst: 1000000
              perClient: {{requestsPerSecond: 1000000, burst: 1000000}}
              maxConcurrentRequests: 100000
              maxRequestBodyBytes: 1048576
            access:
              allowCIDRs: [127.0.0.0/8]
              denyCIDRs: [10.9.0.0/16]
            routes:
              - name: all
                backends:
                  - {{service: web, port: 80}}
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: web
          namespace: bench
        spec:
          selector: {{app: web}}
          ports:
            - {{name: http, port: 80, targetPort: {backend_port}, protocol: TCP}}
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata:
          name: web-bench
          namespace: bench
          labels:
            kubernetes.io/service-name: web
        addressType: IPv4
        endpoints:
          - addresses: ["127.0.0.1"]
            conditions: {{ready: true}}
        ports:
          - {{name: http, port: {backend_port}, protocol: TCP}}
        """
    )


def start_tenantgw(ctx: Context, access_log: bool = False) -> Started:
    """tenantgw under twistd, configured from a manifest directory.

    Readiness is ``/readyz`` answering 200 on the admin endpoint.
    ``python -m twisted`` runs ``twist``, not ``twistd``, so twistd's entry point is
    called through ``-c`` to keep this script's interpreter.  The repository root and
    src/ go on PYTHONPATH so the plugin is found without installing the package.
    """
    source = ctx.tmp / "tenants"
    source.mkdir(exist_ok=True)
    (source / "bench.yaml").write_text(tenant_manifests(ctx.backend_port))
    port, admin, https = free_port(), free_port(), free_port()
    argv = [
        sys.executable,
        "-c",
        "import sys; from twisted.scripts.twistd import run; sys.exit(run())",
        "-n",
        "--pidfile=",
        "tenantgw",
        "--source",
        f"dir:{source}",
        "--http",
        f"tcp:{port}:interface={HOST}",
        "--https",
        f"tcp:{https}:interface={HOST}",
        "--admin",
        f"tcp:{admin}:interface={HOST}",
        "--access-log",
        str(ctx.tmp / "access.log") if access_log else "off",
        *ctx.tenantgw_args,
    ]
    env = dict(os.environ)
    paths = [str(REPO), str(REPO / "src"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    child = ctx.children.start(
        "tenantgw",
        argv,
        cpu=ctx.settings.proxy_cpu,
        log_path=ctx.tmp / "tenantgw.log",
        cwd=ctx.tmp,
        env=env,
    )
    return Started(child, port, ready=lambda: http_get(admin, "/readyz", host=HOST)[0] == 200)


@dataclass
class Target:
    """A proxy under test: how to start it, and which tool it needs to exist."""

    key: str
    name: str
    start: Callable[[Context], Started]
    needs: str | None = None


TARGETS = [
    # Like every peer here, without an access log: the same work for all.
    Target("tenantgw", "tenantgw", start_tenantgw),
    # tenantgw's default: one JSON access-log line per request.
    Target(
        "tenantgw_log",
        "tenantgw, JSON access log on",
        lambda ctx: start_tenantgw(ctx, access_log=True),
    ),
    # The Python/Twisted ceiling: Protocol + httptools both ways, pooled upstream.
    Target(
        "lean",
        "lean Twisted+httptools proxy",
        lambda ctx: start_twisted_peer(ctx, "lean_proxy.py"),
    ),
    Target(
        "rpr",
        "twisted ReverseProxyResource",
        lambda ctx: start_twisted_peer(ctx, "reverse_proxy_resource.py"),
    ),
    Target(
        "bare",
        "bare pooled twisted.web proxy",
        lambda ctx: start_twisted_peer(
            ctx, "bare_pooled_proxy.py", ["--pool-size", str(ctx.settings.connections)]
        ),
    ),
    Target("nginx", "nginx proxy", start_nginx_proxy, needs="nginx"),
    Target("haproxy", "haproxy", start_haproxy, needs="haproxy"),
]


def bench_target(ctx: Context, target: Target) -> Result:
    """Start one proxy, check it really proxies, measure it, stop it (whatever happens)."""
    if target.needs and shutil.which(target.needs) is None:
        return Result(target.key, target.name, failure=f"{target.needs} not installed")
    started: Started | None = None
    try:
        started = target.start(ctx)
        if started.ready is not None:
            wait_until(f"{target.name} readiness", started.child, started.ready, READY_TIMEOUT)
        port = started.port
        wait_until(
            f"{target.name} proxying", started.child, lambda: proxies_backend(port), READY_TIMEOUT
        )
        return measure(ctx.children, ctx.settings, target.key, target.name, port)
    except StartError as exc:
        print(f"{target.key}: failed to start ({exc})", file=sys.stderr, flush=True)
        if started is not None:
            print(log_tail(started.child.log_path), file=sys.stderr, flush=True)
        return Result(target.key, target.name, failure="failed to start")
    finally:
        if started is not None:
            ctx.children.stop(started.child)


# -------------------------------------------------------------------------- report


def describe_errors(result: Result) -> str:
    """Human summary of a run's errors, e.g. ``non-2xx 12, read 3``."""
    parts = [f"non-2xx/3xx {result.non_2xx_3xx}"] if result.non_2xx_3xx else []
    parts += [f"{kind} {count}" for kind, count in result.socket_errors.items()]
    return ", ".join(parts)


def ratios(results: Sequence[Result]) -> list[tuple[str, float | None, float | None]]:
    """tenantgw's req/s and p99 relative to each peer (None when either side has no figures)."""
    by_key = {r.key: r for r in results}
    gw = by_key.get("tenantgw")
    out: list[tuple[str, float | None, float | None]] = []
    for peer in ("lean", "rpr", "bare", "nginx", "haproxy"):
        other = by_key.get(peer)
        if other is None:
            continue
        rps = p99 = None
        if gw and gw.rps and other.rps:
            rps = gw.rps / other.rps
        if gw and gw.p99_ms and other.p99_ms:
            p99 = gw.p99_ms / other.p99_ms
        out.append((f"tenantgw / {other.name}", rps, p99))
    return out


def markdown(results: Sequence[Result], settings: Settings, pinned: bool) -> str:
    """The results table and the ratios, as Markdown."""
    pinning = (
        f"proxies on CPU {settings.proxy_cpu}, wrk and backend on CPU {settings.load_cpu}"
        if pinned
        else "no CPU pinning"
    )
    lines = [
        f"wrk -t1 -c{settings.connections} -d{settings.duration}s --latency"
        f" (warm-up {settings.warmup} s); {pinning}",
        "",
        "| target | req/s | p50 | p99 | errors |",
        "|---|---:|---:|---:|---|",
    ]
    for r in results:
        if r.failure is not None:
            lines.append(f"| {r.name} | - | - | - | {r.failure.splitlines()[0]} |")
            continue
        errors = f"**{describe_errors(r)}**" if r.error_count else "0"
        if busy(r):
            errors += f"; **busy machine: {r.foreign_cpu:.2f} CPU used by others**"
        lines.append(
            f"| {r.name} | {r.rps:,.0f} | {r.p50_ms:.2f} ms | {r.p99_ms:.2f} ms | {errors} |"
        )
    if any(r.error_count for r in results if r.failure is None):
        lines += ["", "**Runs with errors are not comparable: check the target's log.**"]
    if any(busy(r) for r in results):
        lines += ["", "**Other processes competed for CPU during flagged runs: measure again.**"]
    lines += ["", "| ratio | req/s | p99 latency |", "|---|---:|---:|"]
    for label, rps, p99 in ratios(results):
        rps_text = f"{rps:.2f}" if rps is not None else "n/a"
        p99_text = f"{p99:.2f}" if p99 is not None else "n/a"
        lines.append(f"| {label} | {rps_text} | {p99_text} |")
    return "\n".join(lines)


def tool_version(argv: Sequence[str]) -> str:
    """First line a tool prints about its version, for the JSON record."""
    try:
        done = subprocess.run(argv, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    text = (done.stdout or done.stderr).decode(errors="replace").strip()
    return text.splitlines()[0] if text else "unknown"


def write_json(path: Path, results: Sequence[Result], settings: Settings, pinned: bool) -> None:
    """Results plus enough context (versions, settings) to compare runs later."""
    import twisted

    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": asdict(settings),
        "cpu_pinning": pinned,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": {
            "python": platform.python_version(),
            "twisted": twisted.__version__,
            "wrk": tool_version(["wrk", "--version"]),
            "nginx": tool_version(["nginx", "-v"]),
            "haproxy": tool_version(["haproxy", "-v"]),
        },
        "results": [asdict(r) for r in results],
        "ratios": [{"ratio": label, "rps": rps, "p99": p99} for label, rps, p99 in ratios(results)],
    }
    path.write_text(json.dumps(record, indent=2) + "\n")


# ---------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line; --quick trades precision for a run of about half a minute."""
    parser = argparse.ArgumentParser(
        description="Measure tenantgw's proxy throughput against peers (see README.md)."
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per target")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per target")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections")
    parser.add_argument("--quick", action="store_true", help="3 s per target, 1 s warm-up")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    parser.add_argument(
        "--targets",
        default=",".join(TARGET_KEYS),
        help=f"comma-separated subset of {','.join(TARGET_KEYS)} (default: all)",
    )
    parser.add_argument("--proxy-cpu", type=int, default=0, help="CPU for the proxy under test")
    parser.add_argument("--load-cpu", type=int, default=1, help="CPU for wrk and the backend")
    parser.add_argument(
        "--wait-quiet",
        type=int,
        default=0,
        metavar="SECONDS",
        help="before each target, wait up to SECONDS for other processes to go idle",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--tenantgw-args", default="", help="extra twistd tenantgw options, shell-quoted"
    )
    parser.add_argument("--keep-tmp", action="store_true", help="keep configs and logs")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 3, 1
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.targets) - set(TARGET_KEYS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    if args.duration < 1 or args.warmup < 0 or args.connections < 1:
        parser.error("--duration and --connections must be positive, --warmup not negative")
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    """The per-run wrk settings from the parsed command line."""
    return Settings(
        args.duration,
        args.warmup,
        args.connections,
        args.load_cpu,
        args.proxy_cpu,
        args.wait_quiet,
    )


def check_tools(args: argparse.Namespace) -> str | None:
    """Why the run cannot start, or None: wrk and nginx (the backend) are required."""
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            return f"{tool} is required (apt-get install -y {tool.replace('nginx', 'nginx-light')})"
    if not args.no_pin:
        if shutil.which("taskset") is None:
            return "taskset not found (apt-get install -y util-linux), or pass --no-pin"
        wanted = {args.proxy_cpu, args.load_cpu}
        available = os.sched_getaffinity(0)
        if len(wanted) < 2 or not wanted <= available:
            return (
                f"need two distinct CPUs among {sorted(available)} for --proxy-cpu and"
                " --load-cpu, or pass --no-pin"
            )
    return None


@contextlib.contextmanager
def temp_dir(keep: bool) -> Iterator[Path]:
    """The run's scratch directory (configs, manifests, logs), removed unless *keep*."""
    path = Path(tempfile.mkdtemp(prefix="tenantgw-bench-"))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


def run(args: argparse.Namespace) -> list[Result]:
    """Backend up, then every selected target one after the other; always cleans up."""
    settings = settings_from(args)
    results: list[Result] = []
    with temp_dir(args.keep_tmp) as tmp, Children(not args.no_pin) as children:
        print("starting backend nginx", flush=True)
        backend_port = start_backend(tmp, children, settings)
        ctx = Context(tmp, backend_port, settings, children, shlex.split(args.tenantgw_args))
        if "direct" in args.targets:
            results.append(measure(children, settings, "direct", "backend direct", backend_port))
        for target in TARGETS:
            if target.key in args.targets:
                results.append(bench_target(ctx, target))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; exit status 1 when a target failed or any run had errors."""
    args = parse_args(argv)
    problem = check_tools(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    try:
        results = run(args)
    except KeyboardInterrupt:
        print("interrupted; child processes stopped", file=sys.stderr)
        return 130
    except StartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print()
    print(markdown(results, settings_from(args), not args.no_pin))
    if args.json:
        write_json(args.json, results, settings_from(args), not args.no_pin)
    bad = any(r.failure is not None or r.error_count or busy(r) for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
