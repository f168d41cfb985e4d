"""
The Ingress translation inside a compile: tenant namespaces only, and the
messages each namespace's status carries (Rejected Ingresses with the
annotation or field named, unknown annotations as warnings).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from attrs import field, frozen

from tenantgw.translators.ingress import (
    INGRESS_KINDS,
    REJECTED,
    IngressOptions,
    IngressRoute,
    IngressTLS,
    IngressTranslation,
    translate_ingresses,
)
from tenantgw.translators.objects import KubeObject


@frozen
class IngressCompile:
    translation: IngressTranslation = field(factory=IngressTranslation)
    routes: Mapping[str, tuple[IngressRoute, ...]] = field(factory=dict)
    tls: Mapping[str, tuple[IngressTLS, ...]] = field(factory=dict)
    messages: Mapping[str, tuple[str, ...]] = field(factory=dict)


def compile_ingresses(
    objects: Iterable[KubeObject], tenant_namespaces: set[str], options: IngressOptions
) -> IngressCompile:
    by_kind: dict[str, list[KubeObject]] = defaultdict(list)
    for obj in objects:
        if obj.get("kind") in INGRESS_KINDS:
            by_kind[str(obj["kind"])].append(obj)
    if not by_kind.get("Ingress"):
        return IngressCompile()
    translation = translate_ingresses(by_kind, options)
    routes: dict[str, list[IngressRoute]] = defaultdict(list)
    tls: dict[str, list[IngressTLS]] = defaultdict(list)
    messages: dict[str, list[str]] = defaultdict(list)
    for route in translation.routes:
        if route.namespace in tenant_namespaces:
            routes[route.namespace].append(route)
    for entry in translation.tls:
        if entry.namespace in tenant_namespaces:
            tls[entry.namespace].append(entry)
    for status in translation.statuses:
        namespace = status.key.namespace
        if namespace not in tenant_namespaces:
            continue
        if status.state == REJECTED:
            messages[namespace].extend(
                f"Ingress {status.key.name} Rejected: {reason}" for reason in status.reasons
            )
        messages[namespace].extend(f"Ingress {status.key.name}: {w}" for w in status.warnings)
    return IngressCompile(
        translation,
        {ns: tuple(r) for ns, r in routes.items()},
        {ns: tuple(t) for ns, t in tls.items()},
        {ns: tuple(m) for ns, m in messages.items()},
    )
