"""
1,000 tenants with their own certificates: memory and TLS handshake rate,
tenantgw side by side with nginx serving the same certificates by SNI.

    python benchmarks/tls_handshakes.py [--tenants 1000] [--seconds 10]

Each server runs alone, pinned to CPU 0; the load (``openssl s_time -new``:
a full handshake per connection, no session reuse) runs on CPU 1.  Before
measuring, one handshake is made for every tenant's name, so both servers
hold every certificate they would hold in production; memory is read then
(resident set size of every process of the server).  The handshake rate is
the mean over several tenant names.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from proxy_throughput import (
    HOST,
    REPO,
    Child,
    Children,
    free_port,
    http_get,
    wait_until,
)

from tenantgw.tls.default import self_signed

DOMAIN = "bench.example"


def tenant_names(count: int) -> list[str]:
    return [f"t{i:04d}.{DOMAIN}" for i in range(count)]


def write_certificates(directory: Path, names: list[str]) -> None:
    for name in names:
        chain, key = self_signed((name,))
        (directory / f"{name}.crt").write_bytes(chain)
        (directory / f"{name}.key").write_bytes(key)


def tenantgw_manifests(directory: Path, certs: Path, names: list[str]) -> None:
    import yaml

    for name in names:
        namespace = name.split(".")[0]
        tenant = {
            "hosts": [name],
            "tls": {"secretName": "tls", "httpRedirect": False},
            "routes": [{"name": "all", "backends": [{"service": "web", "port": 80}]}],
        }
        objects = [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": namespace,
                    "annotations": {"tenantgw.io/allowed-hosts": name},
                },
            },
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "tenant",
                    "namespace": namespace,
                    "labels": {"tenantgw.io/tenant": "true"},
                },
                "data": {"tenant.yaml": yaml.safe_dump(tenant)},
            },
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/tls",
                "metadata": {"name": "tls", "namespace": namespace},
                "stringData": {
                    "tls.crt": (certs / f"{name}.crt").read_text(),
                    "tls.key": (certs / f"{name}.key").read_text(),
                },
            },
        ]
        (directory / f"{namespace}.yaml").write_text(yaml.safe_dump_all(objects))


def start_tenantgw(children: Children, tmp: Path, source: Path) -> tuple[Child, int]:
    https, http, admin = free_port(), free_port(), free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "src")])
    child = children.start(
        "tenantgw",
        [
            sys.executable,
            "-c",
            "import sys; from twisted.scripts.twistd import run; sys.exit(run())",
            "-n",
            "--pidfile=",
            "tenantgw",
            f"--source=dir:{source}",
            f"--http=tcp:{http}:interface={HOST}",
            f"--https=tcp:{https}:interface={HOST}",
            f"--admin=tcp:{admin}:interface={HOST}",
        ],
        cpu=0,
        log_path=tmp / "tenantgw.log",
        cwd=tmp,
        env=env,
    )
    wait_until(
        "tenantgw /readyz",
        child,
        lambda: http_get(admin, "/readyz", host=HOST)[0] == 200,
        120.0,
    )
    return child, https


def start_nginx(children: Children, tmp: Path, certs: Path, names: list[str]) -> tuple[Child, int]:
    port = free_port()
    workdir = tmp / "nginx"
    workdir.mkdir()
    servers = "\n".join(
        f"""    server {{
        listen {HOST}:{port} ssl;
        server_name {name};
        ssl_certificate {certs / name}.crt;
        ssl_certificate_key {certs / name}.key;
        return 200 "ok\\n";
    }}"""
        for name in names
    )
    temp_paths = "\n".join(
        f"    {kind}_temp_path {workdir / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (workdir / "nginx.conf").write_text(
        f"""daemon off;
master_process off;
worker_processes 1;
pid {workdir / "nginx.pid"};
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temp_paths}
    ssl_session_cache off;
    ssl_session_tickets off;
    ssl_protocols TLSv1.2 TLSv1.3;
    server_names_hash_bucket_size 128;
    server_names_hash_max_size 8192;
{servers}
}}
"""
    )
    child = children.start(
        "nginx",
        ["nginx", "-p", f"{workdir}/", "-c", str(workdir / "nginx.conf"), "-e", "stderr"],
        cpu=0,
        log_path=workdir / "stdout.log",
    )
    wait_until("nginx", child, lambda: handshake(port, names[0]) == names[0], 60.0)
    return child, port


def handshake(port: int, name: str) -> str | None:
    """One full handshake; returns the first DNS name of the certificate served."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    import socket

    try:
        with (
            socket.create_connection((HOST, port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=name) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except OSError:
        return None
    from cryptography import x509

    certificate = x509.load_der_x509_certificate(der)
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return san.value.get_values_for_type(x509.DNSName)[0]


def resident_bytes(pid: int) -> int:
    """RSS of the process and all its descendants."""
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            with open(f"/proc/{current}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            with open(f"/proc/{current}/task/{current}/children") as f:
                pids.extend(int(p) for p in f.read().split())
        except OSError:
            continue
    return total


def _handshake_worker(port: int, names: list[str], seconds: float, offset: int) -> int:
    """Full handshakes (no session reuse), SNI cycling over every name, for C{seconds}."""
    import socket
    import time

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        name = names[(offset + done) % len(names)]
        with (
            socket.create_connection((HOST, port)) as raw,
            context.wrap_socket(raw, server_hostname=name),
        ):
            done += 1
    return done


def handshake_rate(port: int, names: list[str], seconds: int, workers: int) -> float:
    """
    Handshakes per second from C{workers} client processes pinned to CPU 1.
    The client is Python's ssl module (OpenSSL underneath): fast enough for
    tenantgw; for nginx it may be the limit, which the report says.
    """
    import multiprocessing

    context = multiprocessing.get_context("fork")
    with context.Pool(workers, initializer=os.sched_setaffinity, initargs=(0, {1})) as pool:
        counts = pool.starmap(
            _handshake_worker, [(port, names, seconds, i * 7919) for i in range(workers)]
        )
    return sum(counts) / seconds


def measure(name: str, port: int, pid: int, names: list[str], seconds: int) -> dict[str, float]:
    served = sum(handshake(port, n) == n for n in names)
    if served != len(names):
        raise RuntimeError(f"{name}: only {served} of {len(names)} names got their certificate")
    rss = resident_bytes(pid)
    before = _cpu_seconds(pid)
    rate = handshake_rate(port, names, seconds, workers=2)
    cpu = (_cpu_seconds(pid) - before) / seconds
    return {"rss_mib": rss / 2**20, "handshakes_per_s": rate, "server_cpu_s": cpu}


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _per_cpu(row: dict[str, float]) -> float:
    return row["handshakes_per_s"] / max(row["server_cpu_s"], 1e-9)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    names = tenant_names(args.tenants)
    with tempfile.TemporaryDirectory(prefix="tenantgw-tls-") as temp, Children(True) as children:
        tmp = Path(temp)
        certs, source = tmp / "certs", tmp / "tenants"
        certs.mkdir()
        source.mkdir()
        print(f"generating {len(names)} certificates ...", flush=True)
        write_certificates(certs, names)
        tenantgw_manifests(source, certs, names)
        results = {}
        for label, start in (
            ("tenantgw", lambda: start_tenantgw(children, tmp, source)),
            ("nginx", lambda: start_nginx(children, tmp, certs, names)),
        ):
            try:
                child, port = start()
            except Exception:
                for log in tmp.glob("**/*.log"):
                    print(f"--- {log}\n{log.read_text()[-3000:]}", file=sys.stderr)
                raise
            print(f"measuring {label} ...", flush=True)
            results[label] = measure(label, port, child.proc.pid, names, args.seconds)
            children.stop(child)
    gw, ng = results["tenantgw"], results["nginx"]
    print()
    print(f"{len(names)} tenants, each with its own certificate (EC P-256), full handshakes")
    print()
    print("| server | handshakes/s | server CPU busy | handshakes per CPU-second | memory |")
    print("|---|---:|---:|---:|---:|")
    for label, row in results.items():
        print(
            f"| {label} | {row['handshakes_per_s']:,.0f} | {row['server_cpu_s']:.0%}"
            f" | {_per_cpu(row):,.0f} | {row['rss_mib']:,.0f} MiB |"
        )
    print()
    print(
        "Handshakes per CPU-second is the comparable figure: the load generator (one core)"
        " may saturate before a server does."
    )
    print()
    print(f"tenantgw / nginx handshakes per CPU-second: {_per_cpu(gw) / _per_cpu(ng):.2f}")
    print(f"tenantgw / nginx memory: {gw['rss_mib'] / ng['rss_mib']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
