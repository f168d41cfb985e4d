"""
What became of each Ingress this gateway serves, for its status and its
Events, read from what the compile already said (the tenant's status
messages name the Ingress they are about) rather than worked out again.

An Ingress is ours when its class is (L{tenantgw.translators.ingress.is_ours}),
and served when its namespace is a tenant that serves and the translation
did not reject it.  Its state, as for Tenant ConfigMaps: C{Rejected} (it
serves nothing), C{HostConflict} (an older object of another namespace
holds one of its hosts), C{CertificateError} (its spec.tls Secret is
missing, invalid or does not cover its hosts), else C{Accepted}; messages
about it (refused hosts, unknown annotations) are listed with any state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from attrs import frozen

from tenantgw.plans.snapshot import (
    STATE_ACCEPTED,
    STATE_CERTIFICATE_ERROR,
    STATE_HOST_CONFLICT,
    STATE_REJECTED,
    Snapshot,
)
from tenantgw.translators.ingress import IngressOptions, _served_classes, is_ours
from tenantgw.translators.objects import KubeObject, name_of, namespace_of, spec


@frozen
class IngressReport:
    namespace: str
    name: str
    uid: str
    state: str
    messages: tuple[str, ...] = ()
    # Whether it serves: its address is published only then.
    served: bool = False
    # Anything about it refused (a host, an annotation's value): a Warning Event.
    refused: bool = False
    hosts: tuple[str, ...] = ()


def _secret_names(ingress: KubeObject) -> set[str]:
    names = set()
    for entry in spec(ingress).get("tls") or ():
        if isinstance(entry, Mapping) and isinstance(entry.get("secretName"), str):
            names.add(entry["secretName"])
    return names


def _is_conflict(message: str) -> bool:
    return "is already served by namespace" in message or "is reserved for it" in message


def ingress_reports(
    objects: Iterable[KubeObject], snapshot: Snapshot, options: IngressOptions
) -> dict[tuple[str, str], IngressReport]:
    """(namespace, name) -> report, for every Ingress of our class."""
    objects = list(objects)
    ours, default = _served_classes(
        [o for o in objects if o.get("kind") == "IngressClass"], options
    )
    reports: dict[tuple[str, str], IngressReport] = {}
    for ingress in objects:
        if ingress.get("kind") != "Ingress" or not is_ours(ingress, ours, default, options):
            continue
        namespace, name = namespace_of(ingress), name_of(ingress)
        uid = str((ingress.get("metadata") or {}).get("uid") or "")
        tenant = snapshot.statuses.get(namespace)
        if tenant is None:
            reports[(namespace, name)] = IngressReport(
                namespace,
                name,
                uid,
                STATE_REJECTED,
                (f"namespace {namespace!r} is not a tenant namespace (--namespace-selector)",),
                refused=True,
            )
            continue
        reports[(namespace, name)] = _report(ingress, namespace, name, uid, tenant.messages)
        if not tenant.serving and reports[(namespace, name)].state != STATE_REJECTED:
            reports[(namespace, name)] = IngressReport(
                namespace,
                name,
                uid,
                STATE_REJECTED,
                (f"the tenant of namespace {namespace!r} serves nothing: {tenant.state}",),
                refused=True,
            )
    return reports


def _report(
    ingress: KubeObject, namespace: str, name: str, uid: str, messages: Sequence[str]
) -> IngressReport:
    rejected_prefix = f"Ingress {name} Rejected: "
    own = (f"Ingress {name} ", f"Ingress {name}: ", f"Ingress {namespace}/{name}: ")
    secrets = _secret_names(ingress)
    rejected: list[str] = []
    conflicts: list[str] = []
    certificates: list[str] = []
    others: list[str] = []
    refused = False
    for message in messages:
        if message.startswith(rejected_prefix):
            rejected.append(message[len(rejected_prefix) :])
        elif message.startswith(own):
            text = message.split(": ", 1)[1] if message.startswith(own[1:]) else message
            if _is_conflict(text):
                conflicts.append(text)
            else:
                others.append(text)
                # An unknown annotation is served around (a warning); a
                # refused host or rule is not served.
                refused = refused or not text.startswith("annotation ")
        elif message.startswith("tls.secretName:") and any(repr(s) in message for s in secrets):
            certificates.append(message)
    if rejected:
        return IngressReport(
            namespace, name, uid, STATE_REJECTED, tuple(rejected + others), refused=True
        )
    if conflicts:
        state = STATE_HOST_CONFLICT
    elif certificates:
        state = STATE_CERTIFICATE_ERROR
    else:
        state = STATE_ACCEPTED
    hosts = tuple(
        dict.fromkeys(
            r["host"]
            for r in spec(ingress).get("rules") or ()
            if isinstance(r, Mapping) and isinstance(r.get("host"), str)
        )
    )
    return IngressReport(
        namespace,
        name,
        uid,
        state,
        tuple(conflicts + certificates + others),
        served=True,
        refused=refused or state != STATE_ACCEPTED,
        hosts=hosts,
    )


def describe(report: IngressReport) -> str:
    """The Event message: what is wrong, else what serves (as for Tenant ConfigMaps)."""
    if report.messages:
        return "; ".join(report.messages)
    if report.state == STATE_ACCEPTED:
        return "serving hosts: " + (", ".join(report.hosts) or "(none)")
    return report.state


__all__ = ["IngressReport", "describe", "ingress_reports"]
