"""
``twistd tenantgw`` options (contract section 8; names are fixed).

Options whose feature is not built yet are accepted, so deployments written
against the contract start, and are named in a warning at start-up: an
option that silently does nothing is worse than one that is refused.
"""

from __future__ import annotations

import ipaddress
import os
import re

from twisted.internet.ssl import TLSVersion
from twisted.python import usage

from tenantgw.app.workers import parse_inherited
from tenantgw.compile.selector import LabelSelector, SelectorError
from tenantgw.config.model import IPNetwork
from tenantgw.dataplane.http1_front import DEFAULT_HTTP1_FRONT, HTTP1_FRONTS
from tenantgw.status.ingress_status import PublishOptions
from tenantgw.tls.certificates import CertificateProblem
from tenantgw.tls.default import default_certificate
from tenantgw.tls.upstream import UpstreamTrust
from tenantgw.translators.gateway_api import GatewayApiOptions
from tenantgw.translators.ingress import IngressOptions
from tenantgw.wire.fields import UNDERSCORE_ACTIONS
from tenantgw.wire.paths import ESCAPED_SLASH_ACTIONS, PathPolicy

IN_CLUSTER = "KUBERNETES_SERVICE_HOST" in os.environ

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def pod_namespace(path: str = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """POD_NAMESPACE (the downward API), else the service account's, else "default"."""
    from_env = os.environ.get("POD_NAMESPACE", "").strip()
    if from_env:
        return from_env
    try:
        with open(path, encoding="utf-8") as f:
            from_file = f.read().strip()
    except OSError:
        from_file = ""
    return from_file or "default"


TLS_VERSIONS = {"1.2": TLSVersion.TLSv1_2, "1.3": TLSVersion.TLSv1_3}


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be > 0")
    return value


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "tenantgw: a multi-tenant reverse proxy. Each Kubernetes namespace is a tenant; "
        "its Tenant ConfigMap declares hosts, routes, TLS, quotas and access policy."
    )

    optFlags = [
        ["proxy-protocol", None, "listeners expect a PROXY header from --trusted-proxies"],
        ["keep-slashes", None, "do not merge runs of slashes in request paths (//a -> /a)"],
    ]

    optParameters = [
        ["source", None, None, "kubernetes | dir:PATH (default: kubernetes in a cluster)"],
        ["kubeconfig", None, None, "kubeconfig file for --source kubernetes"],
        ["context", None, None, "kubeconfig context for --source kubernetes"],
        ["http", None, "tcp:8080", "HTTP listener (Twisted endpoint string)"],
        ["https", None, "tcp:8443", "HTTPS listener (Twisted endpoint string)"],
        ["admin", None, "tcp:9090:interface=127.0.0.1", "admin listener (endpoint string)"],
        ["base-domain", None, None, "derive each tenant's host as <namespace>.<domain>"],
        ["namespace-selector", None, "", "label selector choosing tenant namespaces"],
        [
            "leader-election-namespace",
            None,
            None,
            "namespace of the Lease electing the one status writer (default: the pod's)",
        ],
        ["leader-election-name", None, "tenantgw-status", "name of that Lease"],
        ["default-cert", None, None, "certificate served when no tenant's matches SNI"],
        ["default-key", None, None, "key for --default-cert"],
        ["default-cert-secret", None, None, "NS/NAME of a TLS Secret for the default cert"],
        ["redis", None, None, "redis://host:port/db for quotas shared across replicas"],
        ["redis-failure", None, "open", "open | closed: what quotas do when Redis fails"],
        ["replicas", None, "1", "floor of the gateway count kept in --redis by heartbeats"],
        ["trusted-proxies", None, "", "CIDR[,CIDR] whose X-Forwarded-For is believed"],
        ["workers", None, "1", "processes sharing the listening sockets"],
        ["upstream-timeout", None, "60", "seconds a route waits for its upstream by default"],
        ["header-timeout", None, "15", "seconds a client has to send its request headers"],
        ["poll-interval", None, "1", "seconds between re-reads of a dir: source"],
        ["https-redirect-port", None, "443", "HTTPS port clients are redirected to from HTTP"],
        ["tls-min-version", None, "1.2", "lowest TLS version accepted: 1.2 | 1.3"],
        ["upstream-ca", None, None, "CA bundle (PEM) trusted for TLS to upstreams"],
        ["access-log", None, "stdout", "stdout | off | PATH: one JSON line per request"],
        ["drain-timeout", None, "30", "seconds in-flight requests get to finish on SIGTERM"],
        ["body-timeout", None, "15", "seconds a request body may stall before a 408 (0: never)"],
        [
            "escaped-slashes",
            None,
            "reject",
            "reject | keep | unescape: what %2F and %5C in a request path get",
        ],
        [
            "headers-with-underscores",
            None,
            "drop",
            "drop | reject | allow: request fields whose name contains _",
        ],
        [
            "http1-front",
            None,
            DEFAULT_HTTP1_FRONT,
            "native | twisted: the HTTP/1.1 front (own parser, or twisted.web's hardened)",
        ],
        [
            "max-pending-connects",
            None,
            "64",
            "upstream connections one tenant may be dialling at once; others wait",
        ],
        [
            "ingress-class",
            None,
            "tenantgw",
            "IngressClass (controller tenantgw.io/ingress-controller) whose Ingresses are served",
        ],
        [
            "publish-service",
            None,
            None,
            "NS/NAME of the Service fronting the gateway: its address goes to Ingress and"
            " Gateway statuses",
        ],
        [
            "publish-address",
            None,
            "",
            "ADDRESS[,ADDRESS] (IPs or hostnames) for those statuses; wins over --publish-service",
        ],
        ["inherited-listeners", None, "", "internal: NAME=FD,... sockets a --workers parent bound"],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["gateways"] = []

    def opt_gateway(self, reference: str) -> None:
        """NS/NAME of a Gateway to serve (repeatable; default: every Gateway of our classes)"""
        namespace, slash, name = reference.partition("/")
        if not (slash and namespace and name and "/" not in name):
            raise usage.UsageError(f"--gateway must be NAMESPACE/NAME, not {reference!r}")
        self["gateways"].append((namespace, name))

    def opt_version(self) -> None:
        """Print tenantgw's version and exit (twistd's own --version names Twisted's)."""
        from tenantgw.app.cli import version

        print(f"tenantgw {version()}")
        raise SystemExit(0)

    def postOptions(self) -> None:
        if not self["leader-election-namespace"]:
            self["leader-election-namespace"] = pod_namespace()
        if not self["leader-election-name"]:
            raise usage.UsageError("--leader-election-name: must not be empty")
        source = self["source"]
        if source is None:
            if not IN_CLUSTER:
                raise usage.UsageError(
                    "--source is required outside a cluster: --source dir:PATH or"
                    " --source kubernetes"
                )
            source = "kubernetes"
        if source.startswith("dir:"):
            path = source[4:]
            if not path:
                raise usage.UsageError("--source dir:PATH needs a path")
            self["source_dir"] = os.path.abspath(path)
        elif source == "kubernetes":
            self["source_dir"] = None
        else:
            raise usage.UsageError(f"--source must be 'kubernetes' or 'dir:PATH', not {source!r}")
        self["source"] = source
        if self["redis-failure"] not in ("open", "closed"):
            raise usage.UsageError("--redis-failure must be 'open' or 'closed'")
        if self["redis"] is not None:
            from tenantgw.dataplane.quota_redis import parse_redis_url

            try:
                parse_redis_url(self["redis"])
            except ValueError as e:
                raise usage.UsageError(f"--redis: {e}") from None
        try:
            self["replicas"] = int(self["replicas"])
            if self["replicas"] < 1:
                raise ValueError
        except ValueError:
            raise usage.UsageError("--replicas must be a whole number >= 1") from None
        try:
            self["selector"] = LabelSelector.parse(self["namespace-selector"])
        except SelectorError as e:
            raise usage.UsageError(f"--namespace-selector: {e}") from None
        self["trusted"] = parse_cidrs(self["trusted-proxies"])
        if self["proxy-protocol"] and not self["trusted"]:
            raise usage.UsageError("--proxy-protocol needs --trusted-proxies")
        try:
            workers = int(self["workers"])
            if workers < 1:
                raise ValueError
        except ValueError:
            raise usage.UsageError("--workers must be a whole number >= 1") from None
        self["workers"] = workers
        try:
            self["inherited"] = parse_inherited(self["inherited-listeners"])
        except ValueError as e:
            raise usage.UsageError(f"--inherited-listeners: {e}") from None
        for name in ("upstream-timeout", "header-timeout", "poll-interval", "drain-timeout"):
            try:
                self[name] = _positive_float(self[name])
            except ValueError:
                raise usage.UsageError(f"--{name} must be a number > 0") from None
        try:
            self["body-timeout"] = float(self["body-timeout"])
            if not self["body-timeout"] >= 0:
                raise ValueError
        except ValueError:
            raise usage.UsageError("--body-timeout must be a number >= 0") from None
        if self["escaped-slashes"] not in ESCAPED_SLASH_ACTIONS:
            raise usage.UsageError(
                "--escaped-slashes must be one of " + ", ".join(ESCAPED_SLASH_ACTIONS)
            )
        if self["http1-front"] not in HTTP1_FRONTS:
            raise usage.UsageError("--http1-front must be one of " + ", ".join(HTTP1_FRONTS))
        if self["headers-with-underscores"] not in UNDERSCORE_ACTIONS:
            raise usage.UsageError(
                "--headers-with-underscores must be one of " + ", ".join(UNDERSCORE_ACTIONS)
            )
        self["path_policy"] = PathPolicy(
            merge_slashes=not self["keep-slashes"], escaped_slashes=self["escaped-slashes"]
        )
        try:
            self["max-pending-connects"] = int(self["max-pending-connects"])
            if self["max-pending-connects"] < 1:
                raise ValueError
        except ValueError:
            raise usage.UsageError("--max-pending-connects must be a whole number >= 1") from None
        try:
            port = int(self["https-redirect-port"])
            if not 0 < port < 65536:
                raise ValueError
        except ValueError:
            raise usage.UsageError("--https-redirect-port must be a port number") from None
        self["https-redirect-port"] = port
        if self["tls-min-version"] not in TLS_VERSIONS:
            raise usage.UsageError("--tls-min-version must be 1.2 or 1.3")
        try:
            self["default_certificate"] = default_certificate(
                self["default-cert"], self["default-key"]
            )
        except CertificateProblem as e:
            raise usage.UsageError(f"--default-cert/--default-key: {e}") from None
        try:
            ca_bundle = None
            if self["upstream-ca"] is not None:
                with open(self["upstream-ca"], "rb") as f:
                    ca_bundle = f.read()
            self["upstream_trust"] = UpstreamTrust(ca_bundle)
        except (OSError, ValueError) as e:
            raise usage.UsageError(f"--upstream-ca: {e}") from None
        reference = self["default-cert-secret"]
        if reference is not None:
            namespace, slash, name = reference.partition("/")
            if not (slash and namespace and name and "/" not in name):
                raise usage.UsageError("--default-cert-secret must be NAMESPACE/NAME")
            self["default_certificate_secret"] = (namespace, name)
        else:
            self["default_certificate_secret"] = None
        self["ingress"] = IngressOptions(ingress_class=self["ingress-class"])
        self["publish"] = parse_publish(self["publish-service"], self["publish-address"])
        self["gateway_api"] = GatewayApiOptions(
            gateways=frozenset(self["gateways"]) if self["gateways"] else None
        )
        base_domain = self["base-domain"]
        if base_domain is not None:
            self["base-domain"] = base_domain.strip(".").lower() or None


def parse_publish(service: str | None, addresses: str) -> PublishOptions:
    published: tuple[str, str] | None = None
    if service is not None:
        namespace, slash, name = service.partition("/")
        if not (slash and namespace and name and "/" not in name):
            raise usage.UsageError(f"--publish-service must be NAMESPACE/NAME, not {service!r}")
        published = (namespace, name)
    listed = []
    for part in (p.strip() for p in addresses.split(",")):
        if not part:
            continue
        if not _ADDRESS.fullmatch(part) and not _is_ip(part):
            raise usage.UsageError(f"--publish-address: {part!r} is neither an IP nor a hostname")
        listed.append(part)
    return PublishOptions(published, tuple(listed))


_ADDRESS = re.compile(
    r"[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*"
)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_cidrs(text: str) -> tuple[IPNetwork, ...]:
    networks = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=True))
        except ValueError as e:
            raise usage.UsageError(f"--trusted-proxies: {part!r} is not a CIDR ({e})") from None
    return tuple(networks)
