"""
Ingress C{status.loadBalancer.ingress}: the addresses clients reach the
gateway at, published on the Ingresses it serves (contract section 13), as
ingress-nginx publishes them.

The addresses come from C{--publish-address a,b} (IPs as C{ip}, anything
else as C{hostname}) or, when that is not given, from the Service named by
C{--publish-service NS/NAME}, by ingress-nginx's rule for its type:

  - C{LoadBalancer}: its C{status.loadBalancer.ingress} (IP, else hostname),
    then its C{spec.externalIPs} not already listed;
  - C{NodePort}: its C{externalIPs}, else its C{clusterIP};
  - C{ClusterIP}: its C{clusterIP} (a headless Service's C{None}: nothing);
  - C{ExternalName}: its C{externalName}, as a hostname.

Addresses are sorted (hostname, then IP) as ingress-nginx sorts them, so
the same Service always gives the same status and a comparison suffices to
skip a write.  Without either flag nothing is written.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from attrs import frozen

from tenantgw.status.ingress_report import IngressReport
from tenantgw.status.writer import Desire, StatusKey
from tenantgw.translators.objects import KubeObject, name_of, namespace_of

ServiceLookup = Callable[[str, str], "KubeObject | None"]


@frozen
class PublishOptions:
    service: tuple[str, str] | None = None
    addresses: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.service is not None or bool(self.addresses)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def entries(addresses: Iterable[str]) -> list[dict[str, str]]:
    """C{loadBalancer.ingress} entries, deduplicated and sorted as ingress-nginx sorts them."""
    seen: dict[tuple[str, str], dict[str, str]] = {}
    for address in addresses:
        address = address.strip()
        if not address:
            continue
        entry = {"ip": address} if _is_ip(address) else {"hostname": address}
        seen.setdefault((entry.get("hostname", ""), entry.get("ip", "")), entry)
    return [seen[k] for k in sorted(seen)]


def service_addresses(service: Mapping[str, Any] | None) -> list[str]:
    """ingress-nginx's addresses of a Service, by its type (none when it is absent)."""
    if service is None:
        return []
    body = service.get("spec") or {}
    kind = body.get("type") or "ClusterIP"
    cluster_ip = body.get("clusterIP")
    cluster = [cluster_ip] if isinstance(cluster_ip, str) and cluster_ip not in ("", "None") else []
    external = [ip for ip in body.get("externalIPs") or () if isinstance(ip, str)]
    if kind == "ExternalName":
        name = body.get("externalName")
        return [name] if isinstance(name, str) and name else []
    if kind == "ClusterIP":
        return cluster
    if kind == "NodePort":
        return external or cluster
    if kind == "LoadBalancer":
        balancer = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ()
        found = [
            (b.get("ip") or b.get("hostname") or "") for b in balancer if isinstance(b, Mapping)
        ]
        return [a for a in found if a] + [ip for ip in external if ip not in found]
    return []


def published(options: PublishOptions, lookup: ServiceLookup) -> list[dict[str, str]]:
    """The entries to publish now: --publish-address wins over --publish-service."""
    if options.addresses:
        return entries(options.addresses)
    if options.service is not None:
        return entries(service_addresses(lookup(*options.service)))
    return []


def gateway_addresses(balancer: Iterable[Mapping[str, str]]) -> list[dict[str, str]]:
    """The same addresses as a Gateway's C{status.addresses}."""
    return [
        {"type": "IPAddress", "value": e["ip"]}
        if "ip" in e
        else {"type": "Hostname", "value": e["hostname"]}
        for e in balancer
    ]


def _balancer(obj: Mapping[str, Any]) -> list[Any]:
    return list(((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ())


def publish(balancer: list[dict[str, str]]) -> Desire:
    def desire(obj: Mapping[str, Any]) -> Any:
        status = dict(obj.get("status") or {})
        status["loadBalancer"] = {"ingress": balancer} if balancer else {}
        return status

    return desire


def clear(balancer: list[dict[str, str]], only_if_ours: bool) -> Desire:
    """
    C{loadBalancer: {}}; with C{only_if_ours}, only while it still shows our
    addresses (another controller may have published its own since).
    """

    def desire(obj: Mapping[str, Any]) -> Any:
        current = _balancer(obj)
        if not current or (only_if_ours and current != balancer):
            return None
        status = dict(obj.get("status") or {})
        status["loadBalancer"] = {}
        return status

    return desire


class IngressPublisher:
    """
    Per rebuild, the desired status of every Ingress that is, or while this
    replica led was, served by it.  Ingresses of other classes are left
    alone, but for one that we served a moment ago (its class changed)
    whose status still shows our addresses.
    """

    def __init__(self, options: PublishOptions, lookup: ServiceLookup) -> None:
        self.options = options
        self.lookup = lookup
        self.served: set[StatusKey] = set()
        self.balancer: list[dict[str, str]] = []

    def desires(
        self, objects: Iterable[KubeObject], reports: Mapping[tuple[str, str], IngressReport]
    ) -> dict[StatusKey, tuple[KubeObject, Desire]]:
        if not self.options.enabled:
            return {}
        balancer = published(self.options, self.lookup)
        before, self.balancer = self.balancer, balancer
        result: dict[StatusKey, tuple[KubeObject, Desire]] = {}
        served: set[StatusKey] = set()
        for obj in objects:
            if obj.get("kind") != "Ingress":
                continue
            namespace, name = namespace_of(obj), name_of(obj)
            key = StatusKey("Ingress", namespace, name)
            report = reports.get((namespace, name))
            if report is not None and report.served:
                served.add(key)
                result[key] = (obj, publish(balancer))
            elif report is not None:
                result[key] = (obj, clear(balancer, only_if_ours=False))
            elif key in self.served:
                # No longer of our class: clear what we published, if still there.
                result[key] = (obj, clear(before or balancer, only_if_ours=True))
        self.served = served
        return result

    def addresses_changed(self) -> bool:
        """Whether the published addresses moved since the last rebuild (the Service changed)."""
        return self.options.enabled and published(self.options, self.lookup) != self.balancer
