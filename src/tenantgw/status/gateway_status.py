"""
Gateway API statuses, as the translation computed them
(C{Snapshot.object_statuses}), turned into status subresource bodies for
the writer: GatewayClass and Gateway conditions (with listeners and, from
the publish settings, addresses), HTTPRoute and GRPCRoute
C{status.parents[]}.

Two rules of the spec shape the merge with what the object already says:

  - C{lastTransitionTime} moves only when a condition's C{status} does; a
    new reason or message alone keeps the time.  So a rebuild that changes
    nothing computes exactly the status that is there, and nothing is
    written.
  - A route's C{parents[]} is shared: entries whose C{controllerName}
    is another controller's are kept as they are; ours are replaced, and
    removed when the route no longer names one of our Gateways.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from tenantgw.compile.gateway_api import status_json
from tenantgw.status.writer import Desire, StatusKey
from tenantgw.translators.gateway_api import ROUTE_KINDS, ObjectStatus
from tenantgw.translators.objects import KubeObject, name_of, namespace_of

CONTROLLER = "tenantgw.io/gateway-controller"
Now = Callable[[], datetime.datetime]


def stamp(now: datetime.datetime) -> str:
    return now.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(
    existing: Iterable[Any] | None, computed: Sequence[Mapping[str, Any]], now: str
) -> list[dict[str, Any]]:
    """Ours, with the transition time kept where the status did not change; others kept."""
    previous = {c.get("type"): c for c in existing or () if isinstance(c, Mapping)}
    result = []
    for condition in computed:
        old = previous.pop(condition["type"], None)
        time = now
        if old is not None and old.get("status") == condition["status"]:
            time = old.get("lastTransitionTime") or now
        result.append({**condition, "lastTransitionTime": time})
    # Condition types we do not set (a newer spec's, another tool's) stay.
    result.extend(dict(c) for c in previous.values())
    return result


def _same_parent(a: Mapping[str, Any], b: Mapping[str, Any], namespace: str) -> bool:
    def norm(ref: Mapping[str, Any]) -> tuple[Any, ...]:
        return (
            ref.get("group") or "gateway.networking.k8s.io",
            ref.get("kind") or "Gateway",
            ref.get("namespace") or namespace,
            ref.get("name"),
            ref.get("sectionName"),
            ref.get("port"),
        )

    return norm(a) == norm(b)


def route_desire(
    computed: Mapping[str, Any] | None,
    now: Now,
    owned: frozenset[tuple[str, str]] | None = None,
) -> Desire:
    """
    An HTTPRoute's or GRPCRoute's parents: ours as computed (none: removed), the others'
    untouched.  C{owned}: with C{--gateway}, the Gateways this deployment
    serves; entries of our controller for another tenantgw deployment's
    Gateway are that deployment's to write.
    """

    def desire(obj: Mapping[str, Any]) -> Any:
        status = dict(obj.get("status") or {})
        namespace = (obj.get("metadata") or {}).get("namespace") or ""
        current = [p for p in status.get("parents") or () if isinstance(p, Mapping)]

        def is_ours(parent: Mapping[str, Any]) -> bool:
            if parent.get("controllerName") != CONTROLLER:
                return False
            if owned is None:
                return True
            ref = parent.get("parentRef") or {}
            return (ref.get("namespace") or namespace, ref.get("name")) in owned

        others = [dict(p) for p in current if not is_ours(p)]
        ours_before = [p for p in current if is_ours(p)]
        ours = []
        time = stamp(now())
        for parent in (computed or {}).get("parents", ()):
            old = next(
                (
                    p
                    for p in ours_before
                    if _same_parent(p.get("parentRef") or {}, parent["parentRef"], namespace)
                ),
                {},
            )
            ours.append(
                {
                    **parent,
                    "conditions": merge_conditions(
                        old.get("conditions"), parent["conditions"], time
                    ),
                }
            )
        if ours == ours_before:
            return None  # ours say it already, wherever they stand in the list
        status["parents"] = others + ours
        return status

    return desire


def object_desire(computed: Mapping[str, Any], now: Now) -> Desire:
    """A GatewayClass's or Gateway's status: our conditions, listeners, addresses."""

    def desire(obj: Mapping[str, Any]) -> Any:
        status = dict(obj.get("status") or {})
        time = stamp(now())
        status["conditions"] = merge_conditions(
            status.get("conditions"), computed.get("conditions", ()), time
        )
        if "listeners" in computed:
            before = {
                lst.get("name"): lst
                for lst in status.get("listeners") or ()
                if isinstance(lst, Mapping)
            }
            status["listeners"] = [
                {
                    **lst,
                    "conditions": merge_conditions(
                        (before.get(lst["name"]) or {}).get("conditions"), lst["conditions"], time
                    ),
                }
                for lst in computed["listeners"]
            ]
        if "addresses" in computed:
            if computed["addresses"]:
                status["addresses"] = computed["addresses"]
            else:
                status.pop("addresses", None)
        return status

    return desire


def gateway_desires(
    objects: Iterable[KubeObject],
    statuses: Iterable[ObjectStatus],
    addresses: list[dict[str, str]] | None,
    now: Now,
    owned: frozenset[tuple[str, str]] | None = None,
) -> dict[StatusKey, tuple[KubeObject, Desire]]:
    """
    C{addresses}: the Gateways' C{status.addresses} (None: left as they are,
    no publish setting given).  C{owned}: C{--gateway}'s Gateways (None:
    every Gateway of our classes is this deployment's).
    """
    watched: dict[StatusKey, KubeObject] = {}
    for obj in objects:
        kind = obj.get("kind")
        if kind in ("GatewayClass", "Gateway", *ROUTE_KINDS):
            key = StatusKey(
                str(kind), "" if kind == "GatewayClass" else namespace_of(obj), name_of(obj)
            )
            watched[key] = obj
    result: dict[StatusKey, tuple[KubeObject, Desire]] = {}
    for status in statuses:
        key = StatusKey(status.key.kind, status.key.namespace, status.key.name)
        found = watched.get(key)
        if found is None:
            continue
        body = status_json(status)
        if key.kind in ROUTE_KINDS:
            result[key] = (found, route_desire(body, now, owned))
            continue
        if key.kind == "Gateway" and addresses is not None:
            body["addresses"] = addresses
        result[key] = (found, object_desire(body, now))
    for key, obj in watched.items():
        if key.kind in ROUTE_KINDS and key not in result:
            # No longer names one of our Gateways: our entries go, if any.
            result[key] = (obj, route_desire(None, now, owned))
    return result
