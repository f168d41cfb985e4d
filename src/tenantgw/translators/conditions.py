"""
Status conditions, as Kubernetes and Gateway API spell them.

Kept as values (not dicts) so that "did the status change?" is an equality
test: the status writer skips a write, and an Event, when nothing changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from attrs import frozen

TRUE = "True"
FALSE = "False"


@frozen
class Condition:
    type: str
    status: str
    reason: str
    message: str = ""
    observed_generation: int = 0

    @property
    def ok(self) -> bool:
        return self.status == TRUE

    def to_json(self) -> dict[str, Any]:
        """The Kubernetes ``metav1.Condition`` shape (lastTransitionTime is the writer's)."""
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "observedGeneration": self.observed_generation,
        }


def condition(
    type_: str, ok: bool, reason: str, message: str = "", *, generation: int = 0
) -> Condition:
    return Condition(type_, TRUE if ok else FALSE, reason, message, generation)


@frozen
class ObjectKey:
    """Which object a status belongs to; sorts by kind, namespace, name."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        if self.namespace:
            return f"{self.kind} {self.namespace}/{self.name}"
        return f"{self.kind} {self.name}"


def generation_of(obj: Mapping[str, Any]) -> int:
    meta = obj.get("metadata") or {}
    value = meta.get("generation") if isinstance(meta, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def first_failure(conditions: Iterable[Condition]) -> Condition | None:
    for cond in conditions:
        if not cond.ok:
            return cond
    return None
